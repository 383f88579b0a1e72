"""A bulk catalog as the studio sees it: its manifest rows, filtered and sorted, and each melody's files.

The manifest is read once (a catalog of 100,000 melodies is ~20 MB of rows in memory); files are
read through ``musicgen.storage`` (local or s3://) only by the paths the manifest gives, so an id
in a URL can never name a file outside the catalog. A missing WAV preview is rendered from the
melody's MIDI file with FluidSynth and kept beside it.
"""

from __future__ import annotations

import io
import math
import posixpath
import re
from dataclasses import dataclass

import pyarrow.parquet as pq

from musicgen import storage
from musicgen.catalog.layout import MANIFEST
from musicgen.music.export import midi_to_wav_bytes, to_png_bytes
from musicgen.music.midi import read_midi

ID = re.compile(r"^[0-9a-f]{8,64}$")  # bulk ids are hex digests
# columns of the manifest a melody list shows and filters on (others are kept in the detail view)
NUMERIC = ("bars", "n_notes", "duration_s", "tempo", "longest_shared_run", "pitch_low", "pitch_high", "seed",
           "style_prob", "temperature", "guidance")
TEXT = ("style", "key", "time_signature", "model_id", "model_version", "top_style")
HIDDEN = ("fingerprint", "head_fingerprint", "pitches", "error")


class UnknownMelody(KeyError):
    """No melody of the catalog has this id."""


@dataclass(frozen=True)
class Query:
    """Filters and order of a melody list (the API's query parameters)."""

    style: str | None = None
    key: str | None = None
    time_signature: str | None = None
    decision: str | None = None  # approve, reject, or "none" for not yet decided
    min_rating: int | None = None
    tag: str | None = None
    search: str | None = None  # substring of the id or a tag or the note
    filters: tuple[tuple[str, float | None, float | None], ...] = ()  # (numeric column, min, max)
    sort: str = "id"
    descending: bool = False
    offset: int = 0
    limit: int = 50


class Catalog:
    def __init__(self, uri: str):
        self.uri = storage.absolute(uri)
        path = storage.join(self.uri, MANIFEST)
        if not storage.exists(path):
            raise FileNotFoundError(f"{uri} holds no {MANIFEST}: give the folder a `musicgen bulk` job wrote")
        table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
        self.columns = [c for c in table.column_names if c not in HIDDEN]
        self.rows = {row["id"]: {k: _plain(row[k]) for k in self.columns} for row in table.to_pylist()}

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, melody_id: str) -> dict:
        if not ID.match(melody_id) or melody_id not in self.rows:
            raise UnknownMelody(melody_id)
        return self.rows[melody_id]

    def facets(self) -> dict:
        """The values a list can be filtered by: every style, key and meter, and numeric ranges."""
        out: dict = {c: sorted({r[c] for r in self.rows.values() if r.get(c) is not None}) for c in TEXT
                     if c in self.columns}
        for c in NUMERIC:
            values = [r[c] for r in self.rows.values() if isinstance(r.get(c), (int, float))]
            if values:
                out[c] = [min(values), max(values)]
        return out

    def select(self, query: Query, reviews: dict) -> tuple[int, list[dict]]:
        """(how many match, the page of matching rows, each with its review)."""
        def keep(row: dict) -> bool:
            review = reviews.get(row["id"])
            for column in ("style", "key", "time_signature"):
                wanted = getattr(query, column)
                if wanted is not None and row.get(column) != wanted:
                    return False
            if query.decision is not None:
                decision = review.decision if review else None
                if (decision or "none") != query.decision:
                    return False
            if query.min_rating is not None and (not review or (review.rating or 0) < query.min_rating):
                return False
            if query.tag is not None and (not review or query.tag not in review.tags):
                return False
            if query.search:
                text = " ".join([row["id"], *(review.tags if review else ()), review.note if review else ""])
                if query.search.lower() not in text.lower():
                    return False
            for column, low, high in query.filters:
                value = row.get(column)
                if value is None or (low is not None and value < low) or (high is not None and value > high):
                    return False
            return True

        matching = [r for r in self.rows.values() if keep(r)]
        matching.sort(key=lambda r: _sort_key(r, reviews, query.sort), reverse=query.descending)
        page = matching[query.offset : query.offset + query.limit]
        return len(matching), page

    def file(self, melody_id: str, fmt: str) -> bytes:
        """The melody's file in a format the bulk job wrote (mid, abc, wav)."""
        relative = self.row(melody_id).get(f"{fmt}_path")
        if not relative:
            raise FileNotFoundError(f"the catalog has no {fmt} file of {melody_id}")
        return storage.read_bytes(self._inside(relative))

    def wav(self, melody_id: str) -> bytes:
        """The WAV preview, rendered from the MIDI file (and kept) when the catalog has none."""
        row = self.row(melody_id)
        relative = row.get("wav_path") or posixpath.join(posixpath.dirname(row["mid_path"]), f"{melody_id}.wav")
        path = self._inside(relative)
        if storage.exists(path):
            return storage.read_bytes(path)
        data = midi_to_wav_bytes(self.file(melody_id, "mid"))
        storage.write_bytes(path, data)
        return data

    def piano_roll(self, melody_id: str) -> bytes:
        melody = read_midi(self.file(melody_id, "mid"))
        return to_png_bytes(melody, f"{self.row(melody_id).get('style', '')} {melody_id}")

    def _inside(self, relative: str) -> str:
        parts = posixpath.normpath(relative).split("/")
        if relative.startswith("/") or ".." in parts or "://" in relative:
            raise FileNotFoundError(f"{relative!r} is not a path inside the catalog")
        return storage.join(self.uri, *parts)


def _plain(value):
    """JSON-safe manifest values: bytes dropped, NaN as null."""
    if isinstance(value, bytes):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _sort_key(row: dict, reviews: dict, column: str):
    review = reviews.get(row["id"])
    if column in ("rating", "decision", "updated_at"):
        value = getattr(review, column, None) if review else None
    else:
        value = row.get(column)
    return (value is None, value if value is not None else 0, row["id"])


def export_approved(catalog: Catalog, reviews: dict, out: str) -> dict:
    """Copy the approved melodies' files to ``out`` with their own ``manifest.parquet``, each row
    carrying its review (decision, rating, tags, note, version). Returns a summary."""
    import pyarrow as pa

    rows = []
    for melody_id, review in sorted(reviews.items()):
        if review.decision != "approve" or melody_id not in catalog.rows:
            continue
        row = dict(catalog.rows[melody_id])
        for column in [c for c in row if c.endswith("_path")]:
            if row[column]:
                storage.write_bytes(storage.join(out, row[column]), catalog.file(melody_id, column[: -len("_path")]))
        rows.append({**row, "decision": review.decision, "rating": review.rating, "tags": list(review.tags),
                     "note": review.note, "review_version": review.version, "reviewed_at": review.updated_at})
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    storage.write_bytes(storage.join(out, MANIFEST), buffer.getvalue())
    return {"out": storage.absolute(out), "melodies": len(rows)}
