"""Melody models behind one contract, and the one artifact format they are saved in.

Every model takes ``(tokens [B,T], style [B])`` and has ``forward(tokens,
style, targets=None) -> (logits, loss)``, ``step(tokens, style, cache)`` for
incremental sampling, ``select_rows(cache, rows)`` to drop finished rows from a
batch, and the training hook ``configure_optimizers`` / ``training_step``, so
one training loop and one sampler serve all of them.

An artifact is a folder (any storage URI) with ``weights.pt`` (a state_dict,
loaded with ``weights_only=True`` so it can never run code) and ``model.json``,
typed and checked by ``ArtifactMeta`` (``models/artifact.py``) when written
and when read. The registry and the model-config check are ``models/registry.py``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from musicgen.models.artifact import (
    FORMAT_VERSION,
    META_FILE,
    REFERENCE_FOLDER,
    WEIGHTS_FILE,
    ArtifactMeta,
    load_artifact,
    model_from_state,
    read_meta,
    safe_load,
    save_artifact,
    state_to_bytes,
    unwrap,
)
from musicgen.models.gan import GANConfig, MelodyGAN
from musicgen.models.lstm import LSTMConfig, LSTMModel, null_style_index, style_table_size
from musicgen.models.registry import MODELS, build_model, check_model_config
from musicgen.models.transformer import TransformerConfig, TransformerModel
from musicgen.pretrained import PRETRAINED, resolve_model


def copy_weights_for_finetuning(model: nn.Module, source: nn.Module) -> None:
    """Start ``model`` from ``source``'s weights (same architecture), or a GAN's generator from a
    trained LSTM (SeqGAN's MLE warm start; the discriminator starts fresh).

    Tables may have gained rows: the token tables when the vocabulary gained style tokens (appended
    after the old ones), the style table when the run knows more styles or adds "no style" (style
    dropout). A new row starts at the mean of the old ones; a "no style" row the source had stays
    the last row.
    """
    model, source = unwrap(model), unwrap(source)
    if isinstance(model, MelodyGAN) and isinstance(source, LSTMModel):
        model = model.generator
    target, given = model.state_dict(), source.state_dict()
    if set(target) != set(given):
        raise ValueError(f"cannot fine-tune: parameters differ ({', '.join(sorted(set(target) ^ set(given)))})")
    old_null = null_style_index(source.config) is not None
    new_null = null_style_index(model.config) is not None
    for name, value in given.items():
        have = target[name]
        style_table = _is_style_table(value, source.config)
        if have.shape == value.shape and not style_table:
            have.copy_(value)
            continue
        if have.shape[1:] != value.shape[1:] or have.size(0) < value.size(0):
            raise ValueError(f"cannot fine-tune: {name} is {tuple(value.shape)} in the artifact, "
                             f"{tuple(have.shape)} here")
        rows = value[:-1] if style_table and old_null else value  # the rows of named styles or tokens
        have[:] = rows.mean(0)
        have[: rows.size(0)] = rows
        if style_table and old_null and new_null:
            have[-1] = value[-1]
    model.load_state_dict(target)


def _is_style_table(value: torch.Tensor, config) -> bool:
    """Whether a parameter is indexed by style: one row per style, then "no style" where trained with it."""
    return value.dim() == 2 and value.size(0) == style_table_size(config) != config.vocab_size


__all__ = [
    "MODELS", "PRETRAINED", "REFERENCE_FOLDER", "resolve_model", "build_model", "check_model_config",
    "copy_weights_for_finetuning", "ArtifactMeta", "FORMAT_VERSION", "META_FILE", "WEIGHTS_FILE",
    "save_artifact", "load_artifact", "read_meta", "safe_load", "state_to_bytes", "model_from_state", "unwrap",
    "LSTMConfig", "LSTMModel", "TransformerConfig", "TransformerModel", "GANConfig", "MelodyGAN",
]
