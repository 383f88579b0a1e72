"""Guidance distillation: a student that samples in one pass what its teacher samples with guidance in two.

Classifier-free guidance runs every melody twice, with its style and without, and mixes the
logits, u + w (c - u) (Ho & Salimans 2022), so guided sampling costs two model rows a melody.
A student started from the teacher's weights learns, for melodies given their style, the
teacher's *guided* distribution at one weight ``w`` (its ``baked_guidance``), and for melodies
without (style dropout, as the teacher was trained) the teacher's unstyled one. Sampled at ``w``
it needs one pass; any other weight w' is still two: its unstyled logits plus (w'/w) times the
difference (the teacher's guided logits at w' up to the student's error). Guidance was distilled
into diffusion models by Meng et al. (2023) and into MusicLM by MusicRL (Cideron et al. 2024).

The weights a model was distilled at is part of its config (``baked_guidance``; 1 = not
distilled), so the sampler, evaluation and the artifact read it from one place.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from musicgen.models.lstm import null_style_index
from musicgen.tokenizers.targets import PAD_ID, hide_style, inputs_and_targets


def baked_guidance(config) -> float:
    """The guidance weight a model's styled branch was distilled at (1: it was not distilled)."""
    return float(getattr(config, "baked_guidance", 1.0))


def effective_weight(config, guidance: float) -> float:
    """The weight to mix a model's two branches with so that it samples at ``guidance``: 1 (one pass,
    the styled branch alone) where ``guidance`` is the weight it was distilled at."""
    return guidance / baked_guidance(config)


def plain_logits(model: nn.Module, inputs: Tensor, style: Tensor) -> Tensor:
    """The model's logits for plain conditional sampling (guidance 1), what bits per token score: its
    styled branch, or for a distilled model its unstyled logits plus 1/w of the difference."""
    logits, _ = model(inputs, style)
    baked = baked_guidance(model.config)
    if baked == 1:
        return logits
    unstyled = hide_style(inputs, torch.ones_like(style, dtype=torch.bool))
    u, _ = model(unstyled, torch.full_like(style, null_style_index(model.config)))
    return u + (logits - u) / baked


def guided_targets(teacher: nn.Module, tokens: Tensor, style: Tensor, weight: float) -> tuple[Tensor, Tensor]:
    """The teacher's guided logits at ``weight`` for every position of ``tokens`` given ``style``, and
    its unstyled logits: the student's targets for styled and for style-dropped rows."""
    teacher.eval()
    with torch.no_grad():
        null = torch.full_like(style, null_style_index(teacher.config))
        inputs, _ = inputs_and_targets(tokens)
        unstyled, _ = inputs_and_targets(hide_style(tokens, torch.ones_like(style, dtype=torch.bool)))
        c, _ = teacher(inputs, style)
        u, _ = teacher(unstyled, null)
        return u + weight * (c - u), u


def distillation_loss(student: nn.Module, teacher: nn.Module, tokens: Tensor, style: Tensor,
                      forward: nn.Module | None = None) -> Tensor:
    """KL(teacher || student) per scored token: styled rows against the teacher's guided distribution
    at the student's ``baked_guidance``, style-dropped rows (the student's ``style_dropout`` share,
    as in training) against its unstyled one, so both of the student's branches stay usable."""
    config = student.config
    null = null_style_index(config)
    if null is None or null_style_index(teacher.config) is None:
        raise ValueError("guidance distillation needs a teacher and student trained with style dropout")
    guided, unstyled = guided_targets(teacher, tokens, style, baked_guidance(config))
    dropped = torch.rand(style.shape, device=style.device) < config.style_dropout
    target = torch.where(dropped[:, None, None], unstyled, guided)
    inputs, targets = inputs_and_targets(hide_style(tokens, dropped))
    logits, _ = (forward or student)(inputs, torch.where(dropped, null, style))
    scored = targets != PAD_ID
    kl = F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(target.float(), -1), log_target=True,
                  reduction="none").sum(-1)
    return (kl * scored).sum() / scored.sum().clamp(min=1)
