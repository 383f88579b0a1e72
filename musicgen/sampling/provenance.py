"""How a melody was made: the one record that ``musicgen generate``'s JSON, the Serve response and
the bulk manifest take their provenance fields from.

``provenance(generator, request)`` builds it; each output keeps its own public names and its own
subset (``Provenance.subset``), so the files and the API read as they always have:

- ``musicgen generate`` (``CLI_FIELDS``) names the model ``model`` and adds ``primer_notes``;
- a Serve response (``SERVE_FIELDS``) carries the model, the requested bars and the guidance used;
- a bulk record (``BULK_FIELDS``) carries the sampling settings and the precision setting every
  actor sampled with (its style and seed come with the melody's row, its bars are the melody's own).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from musicgen.sampling.generator import MelodyGenerator
    from musicgen.sampling.sampler import SampleRequest

# the settings recorded only where a request sets them (None: the model's or the style's own)
OPTIONAL = ("key", "time_signature", "tempo", "program", "form", "section_bars", "variation", "loop")

# what each output takes, in its order: (record field, the output's name for it)
CLI_FIELDS = (("model_id", "model_id"), ("model_version", "model_version"), ("model_name", "model"),
              ("style", "style"), ("seed", "seed"), ("bars", "bars"), ("temperature", "temperature"),
              ("top_k", "top_k"), ("top_p", "top_p"), ("guidance", "guidance"), ("primer_notes", "primer_notes"),
              ("form", "form"), ("section_bars", "section_bars"), ("variation", "variation"), ("loop", "loop"))
SERVE_FIELDS = tuple((name, name) for name in ("style", "seed", "bars", "model_id", "model_version", "model_name",
                                               "guidance", "form", "section_bars", "variation", "loop"))
BULK_FIELDS = tuple((name, name) for name in ("model_id", "model_version", "model_name", "temperature", "top_k",
                                              "top_p", "guidance", "precision"))


@dataclass(frozen=True)
class Provenance:
    """How one melody was made: the model (its run, the weights' version, its kind), the request's
    style and seed, and every sampling setting, enough to make the melody again."""

    model_id: str  # the training run's name
    model_version: str  # first 12 hex digits of the weights' sha256
    model_name: str  # the model's kind (the artifact's ``model``)
    style: str
    seed: int
    bars: int  # requested
    temperature: float
    top_k: int
    top_p: float
    guidance: float  # resolved: the weight sampled with (1: none)
    precision: str  # the weights sampled with: fp32, bf16 or int8
    primer_notes: int = 0  # notes of the primer continued (0: none)
    key: str | None = None
    time_signature: tuple[int, int] | None = None
    tempo: float | None = None
    program: int | None = None
    form: str | None = None  # the section letters asked for, with their length and variation
    section_bars: int | None = None
    variation: float | None = None
    loop: bool | None = None  # True for a loop, else not recorded

    def as_dict(self) -> dict:
        """Every field, in declaration order; the optional settings only where set (a meter as "6/8")."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in OPTIONAL and value is None:
                continue
            if f.name == "time_signature":
                value = "{}/{}".format(*value)
            out[f.name] = value
        return out

    def subset(self, names: Iterable[tuple[str, str]]) -> dict:
        """``{output name: value}`` for ``(field, output name)`` pairs, in their order (``CLI_FIELDS`` ...);
        the optional settings only where set."""
        return {out: getattr(self, name) for name, out in names
                if not (name in OPTIONAL and getattr(self, name) is None)}


def provenance(generator: MelodyGenerator, request: SampleRequest, precision: str | None = None) -> Provenance:
    """The record of ``request`` sampled by ``generator``. The request's guidance must be resolved
    (as ``MelodyGenerator.generate`` returns it); ``precision`` overrides the generator's, where
    other processes sampled (the bulk job's actors)."""
    if request.guidance is None:
        raise ValueError("resolve the request's guidance first (musicgen.sampling.sampler.with_guidance)")
    return Provenance(
        model_id=generator.model_id, model_version=generator.model_version, model_name=generator.model_name,
        style=request.style, seed=request.seed, bars=request.bars, temperature=request.temperature,
        top_k=request.top_k, top_p=request.top_p, guidance=request.guidance,
        precision=precision if precision is not None else generator.precision,
        primer_notes=len(request.primer.notes) if request.primer is not None else 0,
        key=request.key, time_signature=tuple(request.time_signature) if request.time_signature else None,
        tempo=request.tempo, program=request.program, form=request.form,
        section_bars=request.section_bars if request.form else None,
        variation=request.variation if request.form else None, loop=True if request.loop else None,
    )


def melody_meta(request: SampleRequest, program: int) -> dict:
    """What a sampled melody carries in ``Melody.meta`` (its exports read style and program from it):
    the request's part of the record, with the General MIDI ``program`` it is played with."""
    meta = {"style": request.style, "seed": request.seed, "bars": request.bars, "guidance": request.guidance,
            "program": program}
    if request.form:
        meta["form"] = request.form  # the ABC export writes its repeats
    if request.loop:
        meta["loop"] = True  # the MIDI export marks it, the WAV export cuts it to loop
    if request.copies:
        meta["copies"] = [list(pair) for pair in request.copies]  # bars repeating an earlier bar
    return meta

