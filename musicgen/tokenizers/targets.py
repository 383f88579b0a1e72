"""The scoring rule of ``musicgen.tokenizers.base.scored_positions`` on batches of windows, for
the training loss and validation, and style dropout's hiding of the style token; the n-gram
baseline applies the same rule to plain sequences, so "bits per token" means the same tokens for
all three. Part of the token layout, so it lives with the tokenizers (torch, so not imported by
``musicgen.tokenizers`` itself)."""

from __future__ import annotations

import torch

from musicgen.tokenizers.base import STYLE_POSITION, Tokenizer

PAD_ID, BOS_ID = Tokenizer.pad_id, Tokenizer.bos_id


def inputs_and_targets(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of a batch of windows ``[B, T]``: next-token targets, ``PAD_ID`` where
    unscored; the batched form of ``musicgen.tokenizers.base.scored_positions``."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[tokens[:, 0] == BOS_ID, 0] = PAD_ID
    return inputs, targets


def hide_style(tokens: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """Style dropout's input side: in the dropped rows whose window starts a melody, the style token
    becomes ``<pad>`` (a window from inside a melody has no style token to hide)."""
    hide = dropped & (tokens[:, 0] == BOS_ID)
    tokens = tokens.clone()
    tokens[:, STYLE_POSITION] = torch.where(hide, PAD_ID, tokens[:, STYLE_POSITION])
    return tokens
