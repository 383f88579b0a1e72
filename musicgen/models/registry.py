"""The registered models by name, and the one check of a model config.

``check_model_config`` is what a config must pass before a model is built from
it: known fields only, values of the declared types, and a model that the
constructor accepts (built on torch's ``meta`` device, so no memory is spent).
The training driver runs it on the ``-m key=value`` settings before any Ray
worker starts; ``build_model`` runs it too, so both give the same message.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing

import torch
import torch.nn as nn

from musicgen.models.gan import GANConfig, MelodyGAN
from musicgen.models.lstm import LSTMConfig, LSTMModel
from musicgen.models.transformer import TransformerConfig, TransformerModel

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (LSTMConfig, LSTMModel),
    "transformer": (TransformerConfig, TransformerModel),
    "gan": (GANConfig, MelodyGAN),
}


def registered(name: str) -> tuple[type, type[nn.Module]]:
    """(config class, model class) of a registered model; ValueError naming the choices otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


@functools.lru_cache(maxsize=None)
def _field_types(config_cls: type) -> dict[str, object]:
    return typing.get_type_hints(config_cls)


def _fits(value, annotation) -> bool:
    """Whether a JSON/YAML value is of the declared type (an int is a float; a bool is neither; a list is a tuple)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this check does not know: the constructor decides


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_model_config(name: str, config_fields: dict, construct: bool = True):
    """The config object of model ``name`` for ``config_fields``, after checking that a model can be built
    from it; ValueError with a message naming the field otherwise. ``construct=False`` checks the fields
    alone, for the config of a model that was built (a saved artifact's): constructing even on the meta
    device imports torch's compiler (seconds) in every process that loads a model."""
    config_cls, model_cls = registered(name)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config_fields) - set(fields))
    if unknown:
        raise ValueError(f"unknown {name} config fields: {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    missing = sorted(k for k, f in fields.items() if k not in config_fields
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ValueError(f"{name} config lacks {', '.join(missing)}")
    types_ = _field_types(config_cls)
    for key, value in config_fields.items():
        if not _fits(value, types_[key]):
            raise ValueError(f"{name} config {key}={value!r}: expected {_type_name(types_[key])}")
        if key.endswith("dropout") and not 0 <= value < 1:
            raise ValueError(f"{name} config {key}={value!r}: a share of rows or units, 0 <= {key} < 1")
    try:
        config = config_cls(**config_fields)
        if construct:
            with torch.device("meta"):  # the constructor's own checks, without allocating the weights
                model_cls(config)
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        raise ValueError(f"{name} config: {exc}") from exc
    return config


def build_model(name: str, **config_fields) -> nn.Module:
    config_cls, model_cls = registered(name)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config_fields) - known)
    if unknown:
        raise ValueError(f"unknown {name} config fields: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return model_cls(config_cls(**config_fields))
