"""The LSTM's weights rearranged for sampling one token at a time, in fp32, bf16 or int8.

``nn.LSTM`` is built for whole sequences: called once per token it spends most
of its time on call overhead and on the input projection of an embedding. A
sampling cell instead keeps

- layer 0's input part of the gates as tables (token and style rows, exact
  fp32, both biases folded in): an embedding lookup replaces a matrix product;
- one matrix per layer ([W_ih | W_hh] above layer 0), so a layer costs one
  product, written into the gates in place;
- the gate rows reordered to (input, forget, output, cell) with the cell
  gate's rows doubled, so one sigmoid covers all four: tanh(x) = 2 sigmoid(2x) - 1;
- a cache of one tensor per layer (``CellCache``), never stacked per step.

``FloatCell`` multiplies in fp32, or in bf16 where the CPU has bf16 matrix
units (oneDNN sums bf16 products in fp32; the gates and the cell state stay
fp32). ``Int8Cell`` quantises the matrices (see its docstring). Which one is
fastest depends on the CPU, so ``musicgen.sampling.precision`` times them.
Each cell is a snapshot of the weights when it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from musicgen.models.lstm import LSTMModel

CELL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # FloatCell's; "int8" is Int8Cell


class CellCache(NamedTuple):
    """A sampling cell's state, batch first, one tensor per layer."""

    style_gates: Tensor  # [B, 4H]: the style's part of layer 0's gates, fixed for a melody
    h: tuple[Tensor, ...]  # per layer [B, H], in the type the next step's product reads (fp32, bf16 or int8)
    c: tuple[Tensor, ...]  # per layer [B, H], fp32

    def select_rows(self, rows: Tensor) -> CellCache:
        return CellCache(self.style_gates[rows], tuple(h[rows] for h in self.h), tuple(c[rows] for c in self.c))


@dataclass
class _Rearranged:
    """An LSTM's weights in the cells' layout, fp32: gate rows reordered, the cell gate's to be doubled."""

    token_gates: Tensor  # [vocab, 4H]
    style_gates: Tensor  # [styles, 4H]
    matrices: list[Tensor]  # per layer [4H, in], not yet doubled: W_hh for layer 0, [W_ih | W_hh] above
    biases: list[Tensor]  # layers 1, 2, ... [4H], doubled
    doubled: Tensor  # [4H]: 2 for the cell gate's rows, else 1

    @classmethod
    def from_model(cls, model: LSTMModel) -> _Rearranged:
        E, L, H = model.config.embed_dim, model.config.num_layers, model.config.hidden_size
        w = model.lstm._flat_weights  # per layer: w_ih, w_hh, b_ih, b_hh
        i, f, g, o = torch.arange(4 * H).chunk(4)
        order = torch.cat([i, f, o, g])  # PyTorch's rows are (input, forget, cell, output)
        doubled = torch.ones(4 * H, device=w[0].device)
        doubled[3 * H :] = 2
        with torch.no_grad():
            w_ih0, b0 = w[0][order], (w[2] + w[3])[order]
            return cls(
                token_gates=(model.tok_emb.weight @ w_ih0[:, :E].T + b0) * doubled,
                style_gates=(model.style_emb.weight @ w_ih0[:, E:].T) * doubled,
                matrices=[m[order] for m in [w[1], *(torch.cat([w[4 * k], w[4 * k + 1]], dim=1) for k in range(1, L))]],
                biases=[(w[4 * k + 2] + w[4 * k + 3])[order] * doubled for k in range(1, L)],
                doubled=doubled,
            )


def _lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(o tanh(c'), c') from pre-activations in the cells' layout, c' = f c + i tanh(g) = f c - i + 2 i sigmoid(2g)."""
    i, f, o, g2 = torch.sigmoid_(gates).chunk(4, dim=1)
    c = torch.addcmul(torch.mul(f, c).sub_(i), i, g2, value=2)
    return torch.mul(o, torch.tanh(c)), c


@dataclass
class FloatCell:
    """Sampling weights multiplied in ``dtype`` (fp32 or bf16), with fp32 tables, gates and cell state."""

    token_gates: Tensor
    style_gates: Tensor
    weights: list[Tensor]  # per layer [in, 4H] contiguous, in dtype
    biases: list[Tensor]  # layers 1, 2, ... [4H], fp32
    head: tuple[Tensor, Tensor]  # [H, vocab] in dtype, bias [vocab] fp32
    dtype: torch.dtype

    @classmethod
    def from_model(cls, model: LSTMModel, dtype: torch.dtype) -> FloatCell:
        r = _Rearranged.from_model(model)
        with torch.no_grad():
            weights = [(m * r.doubled[:, None]).T.to(dtype).contiguous() for m in r.matrices]
            head = (model.head.weight.T.to(dtype).contiguous(), model.head.bias.detach().clone())
        return cls(r.token_gates, r.style_gates, weights, r.biases, head, dtype)

    def _product(self, base: Tensor, x: Tensor, weight: Tensor, fresh: bool) -> Tensor:
        """``base + x @ weight`` in fp32; into ``base`` itself when it is ``fresh`` (fp32 only)."""
        if self.dtype != torch.float32:
            return torch.mm(x, weight).float().add_(base)
        return base.addmm_(x, weight) if fresh else torch.addmm(base, x, weight)

    def step(self, token: Tensor, style: Tensor, cache: CellCache | None) -> tuple[Tensor, CellCache]:
        L = len(self.weights)
        if cache is None:
            h0 = torch.zeros((token.size(0), self.weights[0].size(0)), dtype=self.dtype, device=token.device)
            cache = CellCache(torch.embedding(self.style_gates, style), (h0,) * L, (h0.float(),) * L)
        hs, cs = [], []
        for k in range(L):
            if k == 0:
                base = torch.embedding(self.token_gates, token).add_(cache.style_gates)
                gates = self._product(base, cache.h[0], self.weights[0], fresh=True)
            else:
                gates = self._product(self.biases[k - 1], torch.cat([hs[-1], cache.h[k]], dim=1), self.weights[k],
                                      fresh=False)
            h, c = _lstm_update(gates, cache.c[k])
            hs.append(h if self.dtype == torch.float32 else h.to(self.dtype))
            cs.append(c)
        head, bias = self.head
        return self._product(bias, hs[-1], head, fresh=False), CellCache(cache.style_gates, tuple(hs), tuple(cs))


@dataclass
class Int8Cell:
    """Sampling weights in int8.

    Every matrix product multiplies hidden states, which an LSTM keeps in
    (-1, 1): they are quantised with the fixed scale 1/127, weights per output
    row, and multiplied in int8 with exact int32 sums (``torch._int_mm``). No
    scale depends on the batch and no float sum is split by batch size, so a
    row's logits are bit for bit the same in any batch. Whether that is faster
    than fp32 depends on the CPU having fast int8 kernels (VNNI, AMX).

    Each int8 matrix is kept in two layouts: ``x @ W`` with W [in, out]
    contiguous is MKL-DNN's fast case for batches, while at batch 1 the
    [out, in] layout (passed as its transposed view) takes a matrix-vector
    kernel (about 2.5x faster on a Xeon).
    """

    token_gates: Tensor
    style_gates: Tensor
    weights: list[Tensor]  # per layer, int8 [in, 4H]
    row_weights: list[Tensor]  # the same values, [4H, in] contiguous, as [in, 4H] views: for batch 1
    scales: list[Tensor]  # per layer [4H]: each weight row's scale times h's (1/127), doubled for the cell gate
    biases: list[Tensor]
    head: tuple[Tensor, Tensor, Tensor, Tensor]  # int8 [H, vocab], its batch-1 layout, scales [vocab], bias [vocab]

    @classmethod
    def from_model(cls, model: LSTMModel) -> Int8Cell:
        r = _Rearranged.from_model(model)
        with torch.no_grad():
            quantised = [_int8_rows(m) for m in r.matrices]
            head_rows, head_scale = _int8_rows(model.head.weight)
        return cls(r.token_gates, r.style_gates, weights=[q.T.contiguous() for q, _ in quantised],
                   row_weights=[q.T for q, _ in quantised], scales=[s * r.doubled for _, s in quantised],
                   biases=r.biases, head=(head_rows.T.contiguous(), head_rows.T, head_scale,
                                          model.head.bias.detach().clone()))

    def step(self, token: Tensor, style: Tensor, cache: CellCache | None) -> tuple[Tensor, CellCache]:
        L = len(self.weights)
        if cache is None:
            h0 = token.new_zeros((token.size(0), self.weights[0].size(0)), dtype=torch.int8)
            cache = CellCache(torch.embedding(self.style_gates, style), (h0,) * L, (h0.float(),) * L)
        weights = self.row_weights if token.size(0) == 1 else self.weights
        hs, cs = [], []
        for k in range(L):
            if k == 0:
                base, x = torch.embedding(self.token_gates, token).add_(cache.style_gates), cache.h[0]
            else:
                base, x = self.biases[k - 1], torch.cat([hs[-1], cache.h[k]], dim=1)
            # int32 sums promote to fp32
            h, c = _lstm_update(torch.addcmul(base, torch._int_mm(x, weights[k]), self.scales[k]), cache.c[k])
            hs.append(h.mul_(127).round_().to(torch.int8))  # h quantised with scale 1/127
            cs.append(c)
        head, row_head, head_scale, head_bias = self.head
        logits = torch.addcmul(head_bias, torch._int_mm(hs[-1], row_head if token.size(0) == 1 else head), head_scale)
        return logits, CellCache(cache.style_gates, tuple(hs), tuple(cs))


def _int8_rows(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``matrix`` [out, in] in int8, and per-row scales that also undo h's 1/127."""
    row_scale = matrix.abs().amax(dim=1).clamp_min(1e-8) / 127
    return torch.round(matrix / row_scale[:, None]).to(torch.int8).contiguous(), row_scale / 127


def sampling_cell(model: LSTMModel, precision: str) -> FloatCell | Int8Cell:
    """The cell sampling in ``precision`` (fp32, bf16 or int8) with the model's current weights."""
    if precision == "int8":
        return Int8Cell.from_model(model)
    return FloatCell.from_model(model, CELL_DTYPES[precision])
