"""Style-conditional decoder-only Transformer over melody tokens (nanoGPT-style).

Pre-LayerNorm blocks, causal ``F.scaled_dot_product_attention``, learned
positions and tied input/output embeddings, as in nanoGPT. The style
embedding is added to every position (like a second positional signal), so
attention never has to find the STYLE token to know what to imitate.
``step`` keeps a key/value cache so sampling costs O(T) per token, not O(T^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from musicgen.models.lstm import MLETrainingMixin, lm_loss, style_table_size


@dataclass
class TransformerConfig:
    vocab_size: int
    n_styles: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    block_size: int = 512
    dropout: float = 0.1
    style_dropout: float = 0.0  # share of training rows without their style (> 0 enables guidance)
    baked_guidance: float = 1.0  # the guidance weight its styled branch was distilled at (models/distill.py)


@dataclass
class KVCache:
    """Per-layer key and value buffers [B, n_head, capacity, head_dim] filled up to ``pos``.

    Buffers grow by doubling, so appending one token copies nothing most of the
    time (``torch.cat`` per step would copy the whole cache: quadratic in length).
    """

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    pos: int = 0

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append one layer's new keys/values at ``pos``; return that layer's keys/values so far."""
        end = self.pos + k.size(2)
        if layer == len(self.keys):
            self.keys.append(k.new_empty(*k.shape[:2], max(end, 64), k.size(3)))
            self.values.append(torch.empty_like(self.keys[-1]))
        elif end > self.keys[layer].size(2):
            for buffers in (self.keys, self.values):
                grown = buffers[layer].new_empty(*k.shape[:2], max(end, 2 * buffers[layer].size(2)), k.size(3))
                grown[:, :, : self.pos] = buffers[layer][:, :, : self.pos]
                buffers[layer] = grown
        self.keys[layer][:, :, self.pos : end] = k
        self.values[layer][:, :, self.pos : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def select_rows(self, rows: Tensor) -> KVCache:
        """The cache of only these batch rows (a sampler drops finished melodies)."""
        return KVCache([k[rows] for k in self.keys], [v[rows] for v in self.values], self.pos)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError("n_embd must be a multiple of n_head")
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = 0
        if cache is not None:
            p = cache.pos
            k, v = cache.extend(layer, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if p == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new query sees the whole cache
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # several new queries after a cache: causal mask shifted by p
            mask = torch.arange(p + T, device=x.device)[None, :] <= (p + torch.arange(T, device=x.device))[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class TransformerModel(MLETrainingMixin, nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.wse = nn.Embedding(style_table_size(config), config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("attn.c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _run(self, tokens: Tensor, style: Tensor, cache: KVCache | None) -> Tensor:
        """Logits for ``tokens``; with a cache, the tokens follow its positions and are appended to it."""
        T = tokens.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence reaches position {start + T} but the model's block_size is {self.config.block_size}; "
                "truncate or window the context"
            )
        pos = torch.arange(start, start + T, device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(pos)[None] + self.wse(style)[:, None, :])
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.ln_f(x))

    def forward(self, tokens: Tensor, style: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        logits = self._run(tokens, style, None)
        return logits, (lm_loss(logits, targets) if targets is not None else None)

    def step(self, tokens: Tensor, style: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Incremental decoding. ``tokens`` [B,t] are the tokens the cache has NOT seen yet (the
        prompt on the first call, then the one new token); returns the last position's logits [B,V]."""
        cache = cache if cache is not None else KVCache()
        return self._run(tokens, style, cache)[:, -1, :], cache

    @staticmethod
    def select_rows(cache: KVCache, rows: Tensor) -> KVCache:
        return cache.select_rows(rows)
