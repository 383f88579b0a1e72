"""The model artifact: weights plus typed metadata, checked when written and when read.

An artifact is a folder (any storage URI) with ``weights.pt`` (a state_dict,
loaded with ``weights_only=True`` so it can never run code) and ``model.json``,
the metadata, which ``ArtifactMeta`` is the one reader and writer of.
``model.json`` is written last, so its presence marks a complete artifact.

The file format is the one every artifact so far has (the shipped model
included, which is read as it is)::

    {"format_version": 1, "model": "lstm", "config": {...}, "n_params": ..., "torch_version": "...",
     "extra": {"tokenizer": {...}, "styles": [...], "data_stats": {...}, "training": {...},
               "train_config": {...}}}

A training checkpoint's ``extra`` holds ``step`` and ``epoch`` instead. Keys of
``extra`` this version does not know are kept (``other``) and written back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import pickle
import posixpath
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from musicgen import storage
from musicgen.models.lstm import null_style_index
from musicgen.models.registry import build_model, check_model_config, registered
from musicgen.music.form import FormMix
from musicgen.pretrained import resolve_model

FORMAT_VERSION = 1
WEIGHTS_FILE, META_FILE = "weights.pt", "model.json"
REFERENCE_FOLDER = "reference"  # optional: shards of the training corpus, for the bulk job's copy check
COMPANIONS = ("style_classifier", "reference")  # what may ride along in an artifact's folder
_EXTRA_FIELDS = ("tokenizer", "styles", "data_stats", "training", "train_config", "step", "epoch", "companions")


@dataclass(frozen=True)
class ArtifactMeta:
    """What ``model.json`` says about a model: how to rebuild it and where it came from."""

    model: str  # the registered name (``MODELS``)
    config: dict  # the model config's fields (``dataclasses.asdict``)
    n_params: int
    torch_version: str
    tokenizer: dict | None = None  # ``Tokenizer.to_dict()``; None only in training checkpoints
    styles: tuple[str, ...] | None = None  # the tokenizer's styles, in style-id order
    data_stats: dict | None = None  # the shards' stats.json
    training: dict | None = None  # the run's summary (bits/token, steps, wall time)
    train_config: dict | None = None  # the TrainConfig the run had
    step: int | None = None  # a checkpoint's place in its run
    epoch: int | None = None
    companions: dict[str, str] = field(default_factory=dict)  # e.g. {"style_classifier": "classifier.json"}
    other: dict = field(default_factory=dict)  # keys of ``extra`` this version does not know, kept as they are
    weights_sha256: str | None = None  # of weights.pt: set when loaded, never written
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.styles is not None and not isinstance(self.styles, tuple):
            object.__setattr__(self, "styles", tuple(self.styles))

    # ------------------------------------------------------------------ derived facts
    @property
    def guidable(self) -> bool:
        """Whether the model was trained with style dropout, as classifier-free guidance needs."""
        config_cls, _ = registered(self.model)
        return null_style_index(config_cls(**self.config)) is not None

    @property
    def run_name(self) -> str | None:
        """The training run's name, where the artifact records it."""
        return (self.train_config or {}).get("name")

    @property
    def training_data(self) -> str | None:
        """The shards the model was trained on, where the artifact records them."""
        return (self.train_config or {}).get("data")

    @property
    def version(self) -> str:
        """First 12 hex digits of the weights' sha256 (loaded artifacts only): changes whenever the weights do."""
        if not self.weights_sha256:
            raise ValueError("the weights' digest is known once the artifact is loaded (load_artifact)")
        return self.weights_sha256[:12]

    def form_mix(self, style: str) -> FormMix:
        """How the style's training melodies are built (``form_label`` -> melodies, and per label some
        melodies' repeated bars and lengths), as preprocessing recorded them; empty where the shards
        predate that. Read from the stats once per artifact: the bulk job asks for every melody it samples."""
        return self._form_mixes.get(style) or FormMix()

    @functools.cached_property
    def _form_mixes(self) -> dict[str, FormMix]:
        per_style = (self.data_stats or {}).get("per_style", {})
        return {style: FormMix.from_stats(entry) for style, entry in per_style.items()}

    # ------------------------------------------------------------------ checks
    def validate(self) -> ArtifactMeta:
        """Raise ValueError unless the metadata describes a model that can be rebuilt and sampled; returns self."""
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"artifact format {self.format_version!r}, expected {FORMAT_VERSION}")
        config = check_model_config(self.model, self.config, construct=False)  # built by load_artifact
        if not isinstance(self.n_params, int) or self.n_params < 0:
            raise ValueError(f"n_params {self.n_params!r} is not a count")
        if self.tokenizer is not None:
            from musicgen.tokenizers import tokenizer_from_dict

            tokenizer = tokenizer_from_dict(self.tokenizer)
            if config.vocab_size != len(tokenizer):
                raise ValueError(f"the model has {config.vocab_size} token ids, its {tokenizer.name} tokenizer "
                                 f"{len(tokenizer)}")
            if self.styles is not None and self.styles != tuple(tokenizer.styles):
                raise ValueError(f"styles {list(self.styles)} differ from the tokenizer's {list(tokenizer.styles)}")
            if config.n_styles != len(tokenizer.styles):
                raise ValueError(f"the model has {config.n_styles} styles, its tokenizer {len(tokenizer.styles)}")
        for name, path in self.companions.items():
            if name not in COMPANIONS:
                raise ValueError(f"unknown companion {name!r}; known: {', '.join(COMPANIONS)}")
            if not isinstance(path, str) or posixpath.isabs(path) or ".." in posixpath.normpath(path).split("/"):
                raise ValueError(f"companion {name} at {path!r}: give a path inside the artifact's folder")
        for key in ("data_stats", "training", "train_config"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a mapping, not {type(getattr(self, key)).__name__}")
        return self

    # ------------------------------------------------------------------ model.json
    def to_json(self) -> dict:
        """``model.json``'s content (without ``weights_sha256``, which belongs to the weights)."""
        extra = {k: getattr(self, k) for k in _EXTRA_FIELDS if getattr(self, k) not in (None, {})}
        if "styles" in extra:
            extra["styles"] = list(extra["styles"])
        return {"format_version": self.format_version, "model": self.model, "config": dict(self.config),
                "n_params": self.n_params, "torch_version": self.torch_version, "extra": {**extra, **self.other}}

    @classmethod
    def from_json(cls, data: dict, weights_sha256: str | None = None) -> ArtifactMeta:
        """Metadata from ``model.json``'s content, validated."""
        if not isinstance(data, dict):
            raise ValueError("model.json is not a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"artifact format {data.get('format_version')!r}, expected {FORMAT_VERSION}")
        missing = [k for k in ("model", "config", "n_params", "torch_version") if k not in data]
        if missing:
            raise ValueError(f"model.json lacks {', '.join(missing)}")
        extra = dict(data.get("extra") or {})
        known = {k: extra.pop(k) for k in _EXTRA_FIELDS if k in extra}
        return cls(model=data["model"], config=dict(data["config"]), n_params=data["n_params"],
                   torch_version=data["torch_version"], other=extra, weights_sha256=weights_sha256,
                   format_version=data["format_version"], **known).validate()


def read_meta(uri: str) -> ArtifactMeta:
    """An artifact's metadata alone (no weights read), validated. ``uri`` may be ``"pretrained"``."""
    uri = resolve_model(uri)
    try:
        return ArtifactMeta.from_json(storage.read_json(storage.join(uri, META_FILE)))
    except ValueError as exc:
        raise ValueError(f"{uri}: {exc}") from exc


# ---------------------------------------------------------------------- weights
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


# ---------------------------------------------------------------------- the artifact
def save_artifact(uri: str, model: nn.Module, name: str, **fields) -> ArtifactMeta:
    """Write ``model`` and its metadata (``ArtifactMeta``'s optional fields: tokenizer, styles, data_stats,
    training, train_config, step, epoch, companions) to the folder ``uri``; checked before anything is
    written. Returns the metadata written."""
    model = unwrap(model)
    _, model_cls = registered(name)
    if not isinstance(model, model_cls):
        raise TypeError(f"model is a {type(model).__name__}, not the registered {name!r} ({model_cls.__name__})")
    meta = ArtifactMeta(model=name, config=dataclasses.asdict(model.config),
                        n_params=sum(p.numel() for p in model.parameters()), torch_version=torch.__version__,
                        **fields).validate()
    storage.write_bytes(storage.join(uri, WEIGHTS_FILE), state_to_bytes(model))
    storage.write_json(storage.join(uri, META_FILE), meta.to_json())
    return meta


def load_artifact(uri: str, map_location="cpu") -> tuple[nn.Module, ArtifactMeta]:
    """(model in eval mode, its validated metadata with ``weights_sha256`` set); refuses weights that
    are not plain tensors. ``uri`` may be ``"pretrained"``, the shipped model."""
    uri = resolve_model(uri)
    raw = storage.read_json(storage.join(uri, META_FILE))
    data = storage.read_bytes(storage.join(uri, WEIGHTS_FILE))
    try:
        meta = ArtifactMeta.from_json(raw, weights_sha256=hashlib.sha256(data).hexdigest())
        model = model_from_state(meta.model, meta.config, data, map_location)
    except (ValueError, TypeError, AssertionError) as exc:  # the model's own constructor checks too
        raise ValueError(f"{uri}: {exc}") from exc
    return model.eval(), meta
