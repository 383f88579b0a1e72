"""The generating side of the bulk job: the Ray Data actor and the figures of each melody.

The reference index that copies are checked against is :mod:`musicgen.evaluation.reference`.

The actor takes a *loader* (``MelodyGenerator.from_artifact`` unless a test or
another deployment passes its own), so the bulk job and Serve build their
model the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from musicgen.evaluation.novelty import IntervalIndex
from musicgen.music.form import format_copies
from musicgen.music.melody import TICKS_PER_BEAT, Melody, interval_fingerprints

if TYPE_CHECKING:
    import ray

    from musicgen.sampling import MelodyGenerator

HEAD_NOTES = 16  # as in preprocessing: the opening whose fingerprint groups variants of one tune

# loader(model_uri, device=..., precision=...), like MelodyGenerator.from_artifact
Loader = Callable[..., "MelodyGenerator"]


def melody_id(model_version: str, style: str, seed: int, shape: str = "") -> str:
    """The same model, style, seed (and ``shape``: a form or loop) always name the same melody, in every
    run and on every machine."""
    return hashlib.sha256(f"{model_version}:{style}:{seed}{shape}".encode()).hexdigest()[:16]


def shape_of(request) -> str:
    """What besides style and seed makes a formed or looped melody what it is; empty for a plain one
    (whose id is unchanged since before forms)."""
    if request.form is None and not request.loop:
        return ""
    copies = f":{format_copies(request.copies)}" if request.copies else ""  # the bars auto repeats
    return f":{request.form}:{request.section_bars}:{request.variation:g}:{int(request.loop)}{copies}"


def row_request(generator: MelodyGenerator, style: str, seed: int, sampling: dict):
    """One catalog row's ``SampleRequest``: the job's ``sampling`` settings, with the style's own form
    where ``style_forms`` names one, a form drawn from the style's own forms where the form is ``auto``
    (the same draw for the same seed), the length a form's sections make. The actors and the driver's
    record of each melody both build it here."""
    from musicgen.sampling.form import parse_style_form, shape_fields
    from musicgen.sampling.sampler import SampleRequest

    settings = dict(sampling)
    form, section_bars, variation, bars = (settings.pop(k, None) for k in ("form", "section_bars", "variation", "bars"))
    own = (settings.pop("style_forms", None) or {}).get(style)
    if own is not None:
        form, own_bars = parse_style_form(own)
        section_bars = own_bars or section_bars
    # a job's bars are the length of a melody without a form; a form's sections set its own
    return SampleRequest(style, seed, **settings, **shape_fields(form, section_bars, variation or 0.0,
                                                                 None if form else bars, seed,
                                                                 generator.meta.form_mix(style)))


def figures(melody: Melody, reference: IntervalIndex) -> dict:
    """What the catalog records of one melody, and what the filters on the driver need."""
    pitches = [n.pitch for n in melody.notes]
    full, head = interval_fingerprints(melody, HEAD_NOTES) if pitches else ("", "")
    run = reference.longest_shared_run(pitches)
    return {
        "n_notes": len(pitches),
        "bars": melody.n_bars,
        "duration_s": round(melody.end / TICKS_PER_BEAT * 60.0 / melody.tempo, 3),
        "key": melody.key,
        "tempo": melody.tempo,
        "time_signature": "{}/{}".format(*melody.time_signature),
        "pitch_low": min(pitches, default=None),
        "pitch_high": max(pitches, default=None),
        "longest_shared_run": run.length,
        "nearest_training_id": run.id,
        "fingerprint": full,
        "head_fingerprint": head,
        "pitches": pitches,
    }


def output_schema(formats: Sequence[str]) -> pa.Schema:
    return pa.schema([
        ("id", pa.string()), ("style", pa.string()), ("seed", pa.int64()), ("error", pa.string()),
        ("n_notes", pa.int32()), ("bars", pa.int32()), ("duration_s", pa.float64()), ("key", pa.string()),
        ("tempo", pa.float64()), ("time_signature", pa.string()), ("pitch_low", pa.int32()),
        ("pitch_high", pa.int32()), ("longest_shared_run", pa.int32()), ("nearest_training_id", pa.string()),
        ("fingerprint", pa.string()), ("head_fingerprint", pa.string()), ("pitches", pa.list_(pa.int16())),
        ("style_prob", pa.float64()), ("top_style", pa.string()),
        *((fmt, pa.binary()) for fmt in formats),
    ])


class CatalogGenerator:
    """Ray Data actor: loads the model once, samples each batch of (style, seed) rows in ONE ``generate``
    call, and returns each melody's figures and file contents (an error row where one melody fails)."""

    def __init__(self, model: str, device: str, precision: str, reference: ray.ObjectRef, sampling: dict,
                 formats: Sequence[str], loader: Loader | None = None):
        from musicgen.sampling import MelodyGenerator

        self.generator = (loader or MelodyGenerator.from_artifact)(model, device=device, precision=precision)
        # put in the object store once, for every actor; fetched after the first batch is sampled,
        # so that sampling overlaps the index being built
        self.reference_ref, self.reference = reference, None
        self.sampling, self.formats = sampling, tuple(formats)
        self.schema = output_schema(self.formats)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        requests = [row_request(self.generator, style, seed, self.sampling)
                    for style, seed in zip(batch.column("style").to_pylist(), batch.column("seed").to_pylist())]
        generated = self._generate(requests)
        if self.reference is None:
            self.reference = ray.get(self.reference_ref)
        verdicts = self._verdicts(generated)
        return pa.Table.from_pylist([self._row(r, g, v) for r, g, v in zip(requests, generated, verdicts)],
                                    schema=self.schema)

    def _verdicts(self, generated: list) -> list[tuple]:
        """Each melody's (style probability, top style) by the model's style classifier, in one call for
        the batch; (None, None) for failed rows and when the model carries no classifier."""
        ok = [i for i, g in enumerate(generated) if not isinstance(g, Exception)]
        out: list[tuple] = [(None, None)] * len(generated)
        try:
            judged = self.generator.verdicts([generated[i].melody for i in ok],
                                             [generated[i].request.style for i in ok])
        except Exception:  # noqa: BLE001 (judged one by one below, so one bad melody costs only itself)
            judged = [self._verdict_one(generated[i]) for i in ok]
        for i, verdict in zip(ok, judged):
            out[i] = verdict
        return out

    def _verdict_one(self, generated) -> tuple:
        try:
            return self.generator.verdict(generated.melody, generated.request.style)
        except Exception as exc:  # noqa: BLE001 (recorded as this melody's error)
            return exc

    def _generate(self, requests: list) -> list:
        """One batched call; if it fails, each request alone, so one bad melody costs only itself
        (rows are seeded one by one, so they come out the same either way)."""
        try:
            return self.generator.generate(requests)
        except Exception:  # noqa: BLE001 (isolated below, row by row)
            return [self._generate_one(r) for r in requests]

    def _generate_one(self, request):
        try:
            return self.generator.generate([request])[0]
        except Exception as exc:  # noqa: BLE001 (recorded as this melody's error)
            return exc

    def _row(self, request, generated, verdict) -> dict:
        row = {"id": melody_id(self.generator.model_version, request.style, request.seed, shape_of(request)),
               "style": request.style, "seed": request.seed}
        failed = generated if isinstance(generated, Exception) else verdict if isinstance(verdict, Exception) else None
        if failed is not None:
            return {**row, "error": f"{type(failed).__name__}: {failed}"[:500]}
        from musicgen.music.export import to_bytes  # the writers `musicgen generate` uses

        try:
            files = {fmt: to_bytes(generated.melody, fmt, f"{request.style} {row['id']}") for fmt in self.formats}
            style_prob, top_style = verdict
            return {**row, **figures(generated.melody, self.reference), "style_prob": style_prob,
                    "top_style": top_style, **files}
        except Exception as exc:  # noqa: BLE001 (one melody's error row, never a failed block)
            return {**row, "error": f"{type(exc).__name__}: {exc}"[:500]}
