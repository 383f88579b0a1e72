"""Melody models behind one contract, and the one artifact format they are saved in.

Every model takes ``(tokens [B,T], style [B])`` and has ``forward(tokens,
style, targets=None) -> (logits, loss)``, ``step(tokens, style, cache)`` for
incremental sampling, ``select_rows(cache, rows)`` to drop finished rows from a
batch, and the training hook ``configure_optimizers`` / ``training_step``, so
one training loop and one sampler serve all of them.

An artifact is a folder (any storage URI) with ``weights.pt`` (a state_dict,
loaded with ``weights_only=True`` so it can never run code) and
``model.json`` (model name, config and whatever the caller adds in
``extra``). ``model.json`` is written last, so its presence marks a
complete artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle

import torch
import torch.nn as nn

from musicgen import storage
from musicgen.models.gan import GANConfig, MelodyGAN
from musicgen.models.lstm import LSTMConfig, LSTMModel, null_style_index, style_table_size
from musicgen.models.transformer import TransformerConfig, TransformerModel
from musicgen.pretrained import PRETRAINED, resolve_model

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (LSTMConfig, LSTMModel),
    "transformer": (TransformerConfig, TransformerModel),
    "gan": (GANConfig, MelodyGAN),
}
FORMAT_VERSION = 1
WEIGHTS_FILE, META_FILE = "weights.pt", "model.json"
REFERENCE_FOLDER = "reference"  # optional: shards of the training corpus, for the bulk job's copy check


def _registered(name: str) -> tuple[type, type[nn.Module]]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


def build_model(name: str, **config_fields) -> nn.Module:
    config_cls, model_cls = _registered(name)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config_fields) - known)
    if unknown:
        raise ValueError(f"unknown {name} config fields: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return model_cls(config_cls(**config_fields))


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        for attr in ("_orig_mod", "module"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def state_to_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(unwrap(model).state_dict(), buffer)
    return buffer.getvalue()


def safe_load(data: bytes, map_location="cpu"):
    """The one way musicgen reads torch files from storage: ``weights_only=True``, so a file
    can hold tensors, numbers, strings, lists and dicts but never run code."""
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as e:
        raise ValueError("refusing to load weights that are not plain tensors (weights_only load failed)") from e


def _state_from_bytes(data: bytes, map_location) -> dict[str, torch.Tensor]:
    state = safe_load(data, map_location)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError("weights file is not a state_dict (a mapping of names to tensors)")
    return state


def model_from_state(name: str, config: dict, state: dict | bytes, map_location="cpu") -> nn.Module:
    """Rebuild a model from its registry name, config dict and state_dict (or ``state_to_bytes`` bytes)."""
    if isinstance(state, (bytes, bytearray)):
        state = _state_from_bytes(bytes(state), map_location)
    model = build_model(name, **config)
    model.load_state_dict(state)
    return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model


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


def save_artifact(uri: str, model: nn.Module, name: str, extra: dict) -> None:
    model = unwrap(model)
    config_cls, model_cls = _registered(name)
    if not isinstance(model, model_cls):
        raise TypeError(f"model is a {type(model).__name__}, not the registered {name!r} ({model_cls.__name__})")
    meta = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": dataclasses.asdict(model.config),
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "extra": extra,
    }
    storage.write_bytes(storage.join(uri, WEIGHTS_FILE), state_to_bytes(model))
    storage.write_json(storage.join(uri, META_FILE), meta)


def load_artifact(uri: str, map_location="cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, the model.json metadata plus the weights' ``weights_sha256``);
    refuses weights that are not plain tensors. ``uri`` may be ``"pretrained"``, the shipped model."""
    uri = resolve_model(uri)
    meta = storage.read_json(storage.join(uri, META_FILE))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{uri}: artifact format {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    data = storage.read_bytes(storage.join(uri, WEIGHTS_FILE))
    model = model_from_state(meta["model"], meta["config"], data, map_location)
    return model.eval(), {**meta, "weights_sha256": hashlib.sha256(data).hexdigest()}


__all__ = [
    "MODELS", "PRETRAINED", "REFERENCE_FOLDER", "resolve_model", "build_model", "copy_weights_for_finetuning",
    "save_artifact", "load_artifact", "safe_load", "state_to_bytes", "model_from_state", "unwrap",
    "LSTMConfig", "LSTMModel", "TransformerConfig", "TransformerModel", "GANConfig", "MelodyGAN",
]
