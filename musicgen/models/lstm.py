"""Style-conditional LSTM language model over melody tokens (the baseline).

The classic recipe for symbolic melody generation: 3 stacked LSTM layers of
256 units with dropout 0.3. The style is an embedding concatenated to the
token embedding at every step, so the conditioning cannot be forgotten over
long sequences the way a single leading STYLE token can.

This module also holds the small MLE training hook (``MLETrainingMixin``)
shared by every model here, so one generic loop can drive them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from musicgen.models.targets import PAD_ID, hide_style, inputs_and_targets

GRAD_CLIP = 1.0


def adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW that decays matrices (and embeddings) but not biases or norm gains, as nanoGPT does."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def sync_gradients(module: nn.Module) -> None:
    """Average gradients over the torch.distributed group, if one with several workers is running.

    For models whose training step a DDP wrapper cannot see into (the GAN's
    two losses and two optimizers): one flat all-reduce after backward. The
    language models are given their DDP-wrapped forward instead and skip this.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def backward_and_step(loss: Tensor, module: nn.Module, optimizer: torch.optim.Optimizer, sync: bool = True) -> None:
    """One optimizer step on ``module``'s parameters: zero, backward, sync (unless DDP did), clip, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if sync:
        sync_gradients(module)
    nn.utils.clip_grad_norm_(module.parameters(), GRAD_CLIP)
    optimizer.step()


def lm_loss(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy over all positions, ignoring padded targets."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD_ID,
                           reduction=reduction)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def null_style_index(config) -> int | None:
    """The style id meaning "no style" in a model trained with style dropout, else None.

    Such a model also learns the unconditional distribution, which is what
    classifier-free guidance contrasts the requested style against when sampling.
    """
    return config.n_styles if getattr(config, "style_dropout", 0.0) > 0 else None


def style_table_size(config) -> int:
    """Rows of a model's style embedding: one per style, plus "no style" when trained with style dropout."""
    return config.n_styles + (null_style_index(config) is not None)


class MLETrainingMixin:
    """The training hook shared by the language models (next-token MLE).

    ``tokens`` are whole sequences ``<bos> STYLE body <eos> <pad>...``; the
    model reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``.
    """

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": adamw(self, lr, weight_decay)}

    # a DDP wrapper around the model can carry this training step (see training_step's forward)
    supports_ddp = True

    def mle_loss(self, tokens: Tensor, style: Tensor, forward: nn.Module | None = None) -> Tensor:
        device = _device(self)
        tokens, style = tokens.to(device), style.to(device)
        null = null_style_index(self.config)
        if null is not None and self.training:
            # style dropout (Ho & Salimans 2022, classifier-free guidance): some rows lose both the style
            # embedding and the STYLE token, so the same network also learns melodies of no given style
            dropped = torch.rand(style.shape, device=device) < self.config.style_dropout
            style = torch.where(dropped, null, style)
            tokens = hide_style(tokens, dropped)
        inputs, targets = inputs_and_targets(tokens)
        _, loss = (forward or self)(inputs, style, targets)
        return loss

    def training_step(self, tokens: Tensor, style: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                      step: int, forward: nn.Module | None = None) -> dict[str, float]:
        """One AdamW step. ``forward`` is this model wrapped in DistributedDataParallel when
        training on several workers: DDP then averages the gradients during backward."""
        self.train()
        loss = self.mle_loss(tokens, style, forward)
        backward_and_step(loss, self, optimizers["model"], sync=forward is None)
        return {"loss": loss.item()}


@dataclass
class LSTMConfig:
    vocab_size: int
    n_styles: int
    embed_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 3
    dropout: float = 0.3
    style_dim: int = 32
    style_dropout: float = 0.0  # share of training rows without their style (> 0 enables guidance)


LSTMCache = tuple[Tensor, Tensor]  # (h, c), each [num_layers, B, hidden_size]


class Int8Cache(NamedTuple):
    """The int8 step's state, batch first, one tensor per layer (no stacking per step)."""

    style_gates: Tensor  # [B, 4H]: the style's part of layer 0's gates, fixed for a melody
    h: tuple[Tensor, ...]  # per layer [B, H], int8: h already quantised, which is all the next step reads of it
    c: tuple[Tensor, ...]  # per layer [B, H], fp32


@dataclass
class Int8Cell:
    """An LSTM's weights for int8 sampling on CPU (see ``LSTMModel.quantize_int8``).

    Layer 0's input is an embedding lookup, so its part of the gates is a
    table (exact fp32, both biases folded in). Every matrix product left
    (the gates and the output head) multiplies hidden states, which an LSTM
    keeps in (-1, 1): they are quantised with the fixed scale 1/127, weights
    per output row, and multiplied in int8 with exact int32 sums
    (``torch._int_mm``). No scale depends on the batch and no float sum is
    split by batch size, so a row's logits are bit for bit the same in any batch.

    Each int8 matrix is kept in two layouts: ``x @ W`` with W [in, out]
    contiguous is MKL-DNN's fast case for batches, while at batch 1 the
    [out, in] layout (passed as its transposed view) takes a matrix-vector
    kernel 2.5x faster (16 vs 41 µs for 512 x 1024). The gate rows are
    reordered to (input, forget, output, cell) and the cell gate's rows are
    doubled, so one sigmoid covers all four: tanh(x) = 2 sigmoid(2x) - 1.
    """

    token_gates: Tensor  # [vocab, 4H]
    style_gates: Tensor  # [styles, 4H]
    weights: list[Tensor]  # per layer, int8 [in, 4H]: W_hh for layer 0, [W_ih | W_hh] above
    row_weights: list[Tensor]  # the same values, [4H, in] contiguous, as [in, 4H] views: for batch 1
    scales: list[Tensor]  # per layer [4H]: each weight row's scale times h's (1/127)
    biases: list[Tensor]  # layers 1, 2, ... [4H]: b_ih + b_hh (layer 0's are folded into its tables)
    head: tuple[Tensor, Tensor, Tensor, Tensor]  # int8 [H, vocab], its batch-1 layout, scales [vocab], bias [vocab]

    @classmethod
    def from_model(cls, model: "LSTMModel") -> "Int8Cell":
        E, L, H = model.config.embed_dim, model.config.num_layers, model.config.hidden_size
        w = model.lstm._flat_weights
        i, f, g, o = torch.arange(4 * H).chunk(4)
        gate_order = torch.cat([i, f, o, g])  # PyTorch's rows are (input, forget, cell, output)
        doubled = torch.ones(4 * H)
        doubled[3 * H :] = 2  # the cell gate's rows, in the new order: its tanh becomes a sigmoid
        with torch.no_grad():
            w_ih0, b0 = w[0][gate_order], (w[2] + w[3])[gate_order]
            token_gates = (model.tok_emb.weight @ w_ih0[:, :E].T + b0) * doubled
            style_gates = (model.style_emb.weight @ w_ih0[:, E:].T) * doubled
            matrices = [w[1], *(torch.cat([w[4 * k], w[4 * k + 1]], dim=1) for k in range(1, L))]
            quantised = [_int8_rows(m[gate_order]) for m in matrices]
            biases = [(w[4 * k + 2] + w[4 * k + 3])[gate_order] * doubled for k in range(1, L)]
            head_rows, head_scale = _int8_rows(model.head.weight)
        return cls(token_gates, style_gates, weights=[q.T.contiguous() for q, _ in quantised],
                   row_weights=[q.T for q, _ in quantised], scales=[s * doubled for _, s in quantised], biases=biases,
                   head=(head_rows.T.contiguous(), head_rows.T, head_scale, model.head.bias.detach().clone()))


def _int8_rows(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``matrix`` [out, in] in int8, and per-row scales that also undo h's 1/127."""
    row_scale = matrix.abs().amax(dim=1).clamp_min(1e-8) / 127
    return torch.round(matrix / row_scale[:, None]).to(torch.int8).contiguous(), row_scale / 127


class LSTMModel(MLETrainingMixin, nn.Module):
    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.embed_dim)
        self.style_emb = nn.Embedding(style_table_size(config), config.style_dim)
        self.lstm = nn.LSTM(
            config.embed_dim + config.style_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.int8: Int8Cell | None = None  # set by quantize_int8 for sampling
        self._init_weights()

    def quantize_int8(self) -> None:
        """Sample with int8 weights from now on (CPU; a snapshot of the current weights).

        At batch 256 the int8 step is ~2x faster than fp32 and validation
        bits/token move by 0.02 % (docs/benchmarks.md); training and
        ``forward`` still use the fp32 weights.
        """
        if next(self.parameters()).device.type != "cpu":
            raise ValueError("int8 sampling runs on CPU only")
        self.int8 = Int8Cell.from_model(self)

    def _init_weights(self) -> None:
        # N(0, 1) embeddings (PyTorch's default): with GPT-style std 0.02 the inputs are so small that
        # the LSTM sat ~300 steps on a unigram plateau (3.19 vs 2.33 val bits/token after 300 steps, 2x192)
        nn.init.normal_(self.tok_emb.weight, std=1.0)
        nn.init.normal_(self.style_emb.weight, std=1.0)
        # Forget-gate bias 1 (Jozefowicz et al. 2015): remembers by default early in training.
        h = self.config.hidden_size
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias_ih"):
                with torch.no_grad():
                    p.zero_()
                    p[h : 2 * h].fill_(1.0)
            elif name.startswith("bias_hh"):
                nn.init.zeros_(p)
        nn.init.uniform_(self.head.weight, -1 / math.sqrt(h), 1 / math.sqrt(h))
        nn.init.zeros_(self.head.bias)

    def run_embeddings(self, x: Tensor, style: Tensor, cache: LSTMCache | None = None) -> tuple[Tensor, LSTMCache]:
        """Logits for input *embeddings* ``x`` [B,T,embed_dim]: the GAN feeds soft tokens through here."""
        s = self.style_emb(style)[:, None, :].expand(-1, x.size(1), -1)
        out, cache = self.lstm(torch.cat([x, s], dim=-1), cache)
        return self.head(self.drop(out)), cache

    def forward(self, tokens: Tensor, style: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        logits, _ = self.run_embeddings(self.tok_emb(tokens), style)
        return logits, (lm_loss(logits, targets) if targets is not None else None)

    def step(self, tokens: Tensor, style: Tensor,
             cache: LSTMCache | Int8Cache | None = None) -> tuple[Tensor, LSTMCache | Int8Cache]:
        """Incremental decoding. ``tokens`` [B,t] are the tokens the cache has NOT seen yet (the
        prompt on the first call, then the one new token); returns the last position's logits [B,V]."""
        if not self.training and not torch.is_grad_enabled():
            if self.int8 is not None:  # the prompt too, one token at a time: no fp32 sums on the int8 path
                for t in range(tokens.size(1)):
                    logits, cache = self._int8_step(tokens[:, t], style, cache)
                return logits, cache
            if tokens.size(1) == 1:
                return self._cell_step(tokens[:, 0], style, cache)
        logits, cache = self.run_embeddings(self.tok_emb(tokens), style, cache)
        return logits[:, -1, :], cache

    @staticmethod
    def select_rows(cache: LSTMCache | Int8Cache, rows: Tensor) -> LSTMCache | Int8Cache:
        """The cache of only these batch rows (a sampler drops finished melodies)."""
        if isinstance(cache, Int8Cache):
            return Int8Cache(cache.style_gates[rows], tuple(h[rows] for h in cache.h), tuple(c[rows] for c in cache.c))
        return cache[0][:, rows], cache[1][:, rows]

    def _cell_step(self, token: Tensor, style: Tensor, cache: LSTMCache | None) -> tuple[Tensor, LSTMCache]:
        """One token through the layers with the fused ``lstm_cell`` kernel (what ``nn.LSTMCell``
        runs): for a single time step ``nn.LSTM`` spends ~1.1 ms on CPU where this takes ~0.35 ms
        (3x256, batch 1), which is most of a sampler's time per token. Inference only (no dropout)."""
        x = torch.cat([self.tok_emb(token), self.style_emb(style)], dim=-1)
        if cache is None:
            cache = (x.new_zeros(self.config.num_layers, x.size(0), self.config.hidden_size),) * 2
        h, cell = cache
        hs, cs = [], []
        weights = self.lstm._flat_weights  # per layer: w_ih, w_hh, b_ih, b_hh (module attribute lookups cost ~5 µs each)
        for k in range(self.config.num_layers):
            x, c = torch.lstm_cell(x, (h[k], cell[k]), *weights[4 * k : 4 * k + 4])
            hs.append(x)
            cs.append(c)
        return self.head(x), (torch.stack(hs), torch.stack(cs))

    def _int8_step(self, token: Tensor, style: Tensor, cache: Int8Cache | None) -> tuple[Tensor, Int8Cache]:
        """``_cell_step`` with the weights of ``self.int8``. Written for few torch calls and few passes
        over [B, 4H] arrays: at batch 1 each call costs ~2 µs, as much as the arithmetic, and at
        batch 512 each pass over the gates ~50 µs. Its cache (see ``Int8Cache``) keeps the style's
        part of the first layer's gates, so ``style`` is read on the first step only."""
        q, H, L = self.int8, self.config.hidden_size, self.config.num_layers
        if cache is None:
            h0 = token.new_zeros((token.size(0), H), dtype=torch.int8)
            c0 = torch.zeros_like(h0, dtype=torch.float)
            cache = Int8Cache(torch.embedding(q.style_gates, style), (h0,) * L, (c0,) * L)
        single = token.size(0) == 1
        weights = q.row_weights if single else q.weights
        hs, cs = [], []
        for k in range(L):
            if k == 0:
                base, x = torch.embedding(q.token_gates, token) + cache.style_gates, cache.h[0]
            else:
                base, x = q.biases[k - 1], torch.cat([hs[-1], cache.h[k]], dim=1)
            # int32 sums promote to fp32; the cell gate comes out as sigmoid(2g), so tanh(g) = 2 * g2 - 1
            i, f, o, g2 = torch.sigmoid(torch.addcmul(base, torch._int_mm(x, weights[k]), q.scales[k])).chunk(4, dim=1)
            c = torch.addcmul(torch.mul(f, cache.c[k]).sub_(i), i, g2, value=2)  # f c + i tanh(g)
            hs.append(torch.mul(o, torch.tanh(c)).mul_(127).round_().to(torch.int8))  # h quantised with scale 1/127
            cs.append(c)
        head, row_head, head_scale, head_bias = q.head
        logits = torch.addcmul(head_bias, torch._int_mm(hs[-1], row_head if single else head), head_scale)
        return logits, Int8Cache(cache.style_gates, tuple(hs), tuple(cs))
