"""A trained model ready to sample: the one loader the CLI, the Serve deployments and the bulk job share."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from musicgen import storage
from musicgen.models import ArtifactMeta, load_artifact
from musicgen.models.style_classifier import StyleClassifier
from musicgen.models.style_companion import load_companion, verdicts
from musicgen.music.melody import Melody
from musicgen.sampling.form import sample_form
from musicgen.sampling.precision import PrecisionChoice, resolve_precision
from musicgen.sampling.sampler import (
    GeneratedMelody,
    SampleRequest,
    finish,
    finish_melody,
    is_guidable,
    sample_tokens,
    with_guidance,
)
from musicgen.tokenizers import Tokenizer, tokenizer_from_dict


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class MelodyGenerator:
    model: nn.Module
    tokenizer: Tokenizer
    model_id: str  # the training run's name
    model_version: str  # first 12 hex digits of the weights' sha256: changes whenever the weights do
    meta: ArtifactMeta
    device: torch.device
    precision: str = "fp32"  # the weights sampling uses: fp32, bf16 or int8 (see ``resolve_precision``)
    precision_choice: PrecisionChoice | None = None  # how it was chosen, with the timings when measured
    style_classifier: StyleClassifier | None = None  # the artifact's companion, when it carries one
    style_classifier_version: str | None = None  # first 12 hex digits of its file's sha256

    def __post_init__(self):
        self._lock = threading.Lock()  # one sampling loop at a time per model (threads in Serve replicas)

    @classmethod
    def from_artifact(cls, uri: str, device: str = "auto", precision: str = "auto",
                      batch_sizes: tuple[int, ...] = (1,)) -> MelodyGenerator:
        """Load ``<storage>/<run>/model`` (or any artifact folder) written by training. ``auto``
        precision is the fastest here at ``batch_sizes`` melodies a call (see ``resolve_precision``)."""
        device = pick_device(device)
        model, meta = load_artifact(uri, map_location=device)
        if meta.tokenizer is None:
            raise ValueError(f"{uri}: the artifact carries no tokenizer; was it written by `musicgen train`?")
        tokenizer = tokenizer_from_dict(meta.tokenizer)
        choice = resolve_precision(precision, model, tokenizer, device, batch_sizes, artifact=meta.weights_sha256)
        if hasattr(model, "prepare_sampling"):
            model.prepare_sampling(choice.precision)
        name = meta.run_name or storage.absolute(uri).rstrip("/").split("/")[-2]
        classifier, classifier_version = load_companion(uri, meta)
        return cls(model, tokenizer, name, meta.version, meta, device, choice.precision, choice,
                   classifier, classifier_version)

    @property
    def styles(self) -> tuple[str, ...]:
        return self.tokenizer.styles

    @property
    def guidable(self) -> bool:
        """Whether requests may ask for classifier-free guidance (the model was trained with style dropout)."""
        return is_guidable(self.model)

    @property
    def model_name(self) -> str:
        return self.meta.model

    def check_styles(self, styles: Iterable[str]) -> None:
        """A clear error before any sampling, naming the styles this model knows."""
        unknown = sorted(set(styles) - set(self.styles))
        if unknown:
            raise KeyError(f"unknown style{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                           f"this model knows {', '.join(self.styles)}")

    def verdicts(self, melodies: list[Melody], styles: list[str]) -> list[tuple[float | None, str | None]]:
        """Per melody: (the style classifier's probability of ``styles[i]``, its most probable style),
        both None when the model carries no classifier (see ``musicgen.models.style_companion``)."""
        if self.style_classifier is None:
            return [(None, None)] * len(melodies)
        return verdicts(self.style_classifier, melodies, styles)

    def verdict(self, melody: Melody, style: str) -> tuple[float | None, str | None]:
        """``verdicts`` of one melody."""
        return self.verdicts([melody], [style])[0]

    def generate(self, requests: list[SampleRequest]) -> list[GeneratedMelody]:
        """Melodies for ``requests`` in order, sampled in one batch."""
        self.check_styles(r.style for r in requests)
        requests = [with_guidance(self.model, r) for r in requests]
        plain = [i for i, r in enumerate(requests) if r.form is None and not r.loop]
        formed = [i for i, r in enumerate(requests) if r.form is not None or r.loop]  # sampled section by section
        out: dict[int, GeneratedMelody] = {}
        with self._lock:
            sampled = sample_tokens(self.model, self.tokenizer, [requests[i] for i in plain], self.device)
            tunes = sample_form(self.model, self.tokenizer, [requests[i] for i in formed], self.device)
        for i, tokens in zip(plain, sampled):
            out[i] = GeneratedMelody(finish_melody(self.tokenizer, tokens, requests[i]), requests[i], tokens)
        for i, tune in zip(formed, tunes):
            tokens = self.tokenizer.encode(tune, requests[i].style)
            out[i] = GeneratedMelody(finish(tune, requests[i]), requests[i], tokens)
        return [out[i] for i in range(len(requests))]
