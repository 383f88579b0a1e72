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

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from musicgen.models.lstm_cells import CellCache, FloatCell, Int8Cell, sampling_cell
from musicgen.tokenizers.targets import PAD_ID, hide_style, inputs_and_targets

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
    baked_guidance: float = 1.0  # the guidance weight its styled branch was distilled at (models/distill.py)


LSTMCache = tuple[Tensor, Tensor]  # (h, c), each [num_layers, B, hidden_size]


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
        self.cell: FloatCell | Int8Cell | None = None  # set by prepare_sampling
        self._init_weights()

    def prepare_sampling(self, precision: str) -> None:
        """Sample with a cell of the current weights in ``precision`` (fp32, bf16 or int8) from now on
        (see ``musicgen.models.lstm_cells``). bf16 and int8 run on CPU only. Training and ``forward``
        still use the module's fp32 weights; int8 moved validation bits/token by 0.02 % (docs/benchmarks.md)."""
        if precision != "fp32" and next(self.parameters()).device.type != "cpu":
            raise ValueError(f"{precision} sampling runs on CPU only")
        self.cell = sampling_cell(self, precision)

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
             cache: LSTMCache | CellCache | None = None) -> tuple[Tensor, LSTMCache | CellCache]:
        """Incremental decoding. ``tokens`` [B,t] are the tokens the cache has NOT seen yet (the
        prompt on the first call, then the one new token); returns the last position's logits [B,V].
        Inference after ``prepare_sampling`` runs its cell, a token at a time (the prompt too)."""
        if self.cell is not None and not self.training and not torch.is_grad_enabled():
            for t in range(tokens.size(1)):
                logits, cache = self.cell.step(tokens[:, t], style, cache)
            return logits, cache
        logits, cache = self.run_embeddings(self.tok_emb(tokens), style, cache)
        return logits[:, -1, :], cache

    @staticmethod
    def select_rows(cache: LSTMCache | CellCache, rows: Tensor) -> LSTMCache | CellCache:
        """The cache of only these batch rows (a sampler drops finished melodies)."""
        if isinstance(cache, CellCache):
            return cache.select_rows(rows)
        return cache[0][:, rows], cache[1][:, rows]
