"""The generating side of the bulk job: the Ray Data actor, the figures of each melody, and the reference index.

The actor takes a *loader* (``MelodyGenerator.from_artifact`` unless a test or
another deployment passes its own), so the bulk job and Serve build their
model the same way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from musicgen.data import shards
from musicgen.evaluation.novelty import IntervalIndex
from musicgen.music.melody import TICKS_PER_BEAT, Melody, interval_fingerprints
from musicgen.tokenizers import Tokenizer, tokenizer_from_dict
from musicgen.tokenizers.events import EventTokenizer

if TYPE_CHECKING:
    import ray

    from musicgen.sampling import MelodyGenerator

HEAD_NOTES = 16  # as in preprocessing: the opening whose fingerprint groups variants of one tune

# loader(model_uri, device=..., precision=...), like MelodyGenerator.from_artifact
Loader = Callable[..., "MelodyGenerator"]


def melody_id(model_version: str, style: str, seed: int) -> str:
    """The same model, style and seed always name the same melody, in every run and on every machine."""
    return hashlib.sha256(f"{model_version}:{style}:{seed}".encode()).hexdigest()[:16]


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

        from musicgen.sampling import SampleRequest

        requests = [SampleRequest(style, seed, **self.sampling)
                    for style, seed in zip(batch.column("style").to_pylist(), batch.column("seed").to_pylist())]
        generated = self._generate(requests)
        if self.reference is None:
            self.reference = ray.get(self.reference_ref)
        return pa.Table.from_pylist([self._row(r, g) for r, g in zip(requests, generated)], schema=self.schema)

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

    def _row(self, request, generated) -> dict:
        row = {"id": melody_id(self.generator.model_version, request.style, request.seed),
               "style": request.style, "seed": request.seed}
        if isinstance(generated, Exception):
            return {**row, "error": f"{type(generated).__name__}: {generated}"[:500]}
        from musicgen.music.export import to_bytes  # the writers `musicgen generate` uses

        try:
            files = {fmt: to_bytes(generated.melody, fmt, f"{request.style} {row['id']}") for fmt in self.formats}
            return {**row, **figures(generated.melody, self.reference), **files}
        except Exception as exc:  # noqa: BLE001 (one melody's error row, never a failed block)
            return {**row, "error": f"{type(exc).__name__}: {exc}"[:500]}


def reference_pitches(tokenizer: Tokenizer, tokens: pa.ChunkedArray) -> list[np.ndarray]:
    """The pitch sequence of each token list. Event tokens name their pitches (``NOTE_p``), so these
    are read off the ids directly: decoding would also estimate a key, 2 ms a melody on the whole corpus."""
    if not isinstance(tokenizer, EventTokenizer):
        return [np.array([n.pitch for n in tokenizer.decode(t)[0].notes], dtype=np.int16) for t in tokens.to_pylist()]
    column = tokens.combine_chunks()
    values = column.values.to_numpy().astype(np.int64)
    offsets = column.offsets.to_numpy()
    is_note = (values >= tokenizer.first_note_id) & (values < tokenizer.first_note_id + 128)
    notes_before = np.concatenate([[0], np.cumsum(is_note)])
    counts = notes_before[offsets[1:]] - notes_before[offsets[:-1]]
    return np.split((values[is_note] - tokenizer.first_note_id).astype(np.int16), np.cumsum(counts)[:-1])


def reference_splits(data: str) -> list[str]:
    """The splits of the preprocessed shards at ``data``; FileNotFoundError when there are none."""
    return shards.present_splits(data, shards.COPY_CHECK_SPLITS)


def reference_index(data: str, min_run: int) -> IntervalIndex:
    """An index of every melody of the preprocessed shards at ``data``, all splits: a generated melody
    that copies a validation or test melody is as much a copy as one that copies a training melody."""
    tokenizer = tokenizer_from_dict(shards.read_vocab(data))
    pitches, ids = [], []
    for split in reference_splits(data):
        table = shards.read_split(data, split, ("melody_id", "tokens"))
        pitches += reference_pitches(tokenizer, table.column("tokens"))
        ids += table.column("melody_id").to_pylist()
    return IntervalIndex.build(pitches, ids, min_run)


def timed_reference_index(data: str, min_run: int) -> tuple[IntervalIndex, int, float]:
    """``reference_index`` with its number of melodies and the seconds it took (what the bulk job
    reports), for building it in a Ray task while the actors start."""
    started = time.perf_counter()
    index = reference_index(data, min_run)
    return index, len(index), time.perf_counter() - started
