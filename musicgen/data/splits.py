"""Which split (train, val or test) each preprocessed melody goes to, and which melodies are dropped as copies.

The assignment is a pure function of the melodies, decided on the preprocessing driver from small
columns only: a melody's split is a hash of its group (:func:`stable_fraction`, the same on every
machine and run), where a group is a source piece (:func:`piece_of`: all voices of one work share a
piece) joined with every other piece that shares an opening, so no tune, and no transposition of
it, lands in two splits; exact duplicates are dropped. It is apart from the Ray job
(:mod:`musicgen.data.preprocess`) so the rule can be read, and tested, without Ray. The split names
and the shard layout are :mod:`musicgen.data.shards`'.
"""

from __future__ import annotations

import hashlib
import posixpath

import pyarrow as pa


def stable_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from a string (same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def split_of(group: str, val_fraction: float, test_fraction: float) -> str:
    x = stable_fraction(group)
    if x < test_fraction:
        return "test"
    if x < test_fraction + val_fraction:
        return "val"
    return "train"


def piece_of(path: str) -> str:
    """The source piece of a file named ``<piece>__<part>.ext`` (one file per voice), else the file."""
    folder, name = posixpath.split(path)
    stem = name.rsplit(".", 1)[0]
    return posixpath.join(folder, stem.split("__", 1)[0])


def assign_splits(rows: pa.Table, val_fraction: float, test_fraction: float) -> tuple[dict[str, str], set[str]]:
    """Split by source piece, keeping pieces that share an opening together; drop exact duplicates.

    ``rows`` has melody_id, piece_id, fingerprint and head_fingerprint. Returns
    ({melody_id: split}, {melody_ids dropped as duplicates}).
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    columns = ("melody_id", "piece_id", "fingerprint", "head_fingerprint")
    records = sorted(zip(*(rows.column(c).to_pylist() for c in columns)))
    seen_full: set[str] = set()
    duplicates: set[str] = set()
    for melody_id, piece, full, head in records:
        union("piece:" + piece, "head:" + head)
        if full in seen_full:
            duplicates.add(melody_id)
        seen_full.add(full)
    splits = {
        melody_id: split_of(find("piece:" + piece), val_fraction, test_fraction)
        for melody_id, piece, _, _ in records
        if melody_id not in duplicates
    }
    return splits, duplicates
