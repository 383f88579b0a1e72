"""Editors' decisions, kept in SQLite: one row per reviewed melody, with a version for optimistic locking.

The standard ``sqlite3`` module with explicit transactions (``BEGIN IMMEDIATE``: a writer holds the
database from its read of the version to its write, so two editors cannot both pass the version
check). A write names the version it read; a stale one is refused (the API answers 409), so no
editor overwrites another's decision without seeing it. The schema carries its version in
``PRAGMA user_version``; a database of a newer schema is refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
DECISIONS = ("approve", "reject")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    melody_id TEXT PRIMARY KEY,
    decision TEXT CHECK (decision IN ('approve', 'reject')),
    rating INTEGER CHECK (rating BETWEEN 1 AND 5),
    tags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
)
"""


class StaleReview(Exception):
    """The review changed since the writer read it."""

    def __init__(self, current: Review):
        super().__init__(f"the review is at version {current.version}; reload it and decide again")
        self.current = current


@dataclass(frozen=True)
class Review:
    melody_id: str
    decision: str | None = None
    rating: int | None = None
    tags: tuple[str, ...] = ()
    note: str = ""
    version: int = 0  # 0: never reviewed
    updated_at: str | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "tags": list(self.tags)}


@dataclass
class ReviewStore:
    """Reviews in a SQLite file (``sqlite:///path`` or a plain path), created on first use."""

    path: str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.path = database_path(self.path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} holds reviews of schema {version}; this musicgen reads up to "
                                 f"{SCHEMA_VERSION}: upgrade musicgen")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)  # transactions are explicit
        db.execute("PRAGMA journal_mode = WAL")
        return db

    def get(self, melody_id: str) -> Review:
        return self.get_many([melody_id]).get(melody_id, Review(melody_id))

    def get_many(self, ids: list[str] | None = None) -> dict[str, Review]:
        """Reviews by melody id (all of them when ``ids`` is None); unreviewed melodies are absent."""
        db = self._connect()
        try:
            if ids is None:
                rows = db.execute("SELECT * FROM reviews").fetchall()
            else:
                rows = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += db.execute(f"SELECT * FROM reviews WHERE melody_id IN ({marks})", chunk).fetchall()
        finally:
            db.close()
        return {row[0]: _review(row) for row in rows}

    def put(self, melody_id: str, decision: str | None, rating: int | None, tags: list[str], note: str,
            expected_version: int) -> Review:
        """Write a review if it is still at ``expected_version`` (0 for a melody never reviewed)."""
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)} or null")
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT * FROM reviews WHERE melody_id = ?", (melody_id,)).fetchone()
                current = _review(row) if row else Review(melody_id)
                if current.version != expected_version:
                    db.execute("ROLLBACK")
                    raise StaleReview(current)
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                review = Review(melody_id, decision, rating, tuple(tags), note, current.version + 1, now)
                db.execute(
                    "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(melody_id) DO UPDATE SET "
                    "decision = excluded.decision, rating = excluded.rating, tags = excluded.tags, "
                    "note = excluded.note, version = excluded.version, updated_at = excluded.updated_at",
                    (melody_id, decision, rating, json.dumps(list(tags)), note, review.version, now),
                )
                db.execute("COMMIT")
                return review
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()


def database_path(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (or a plain path); other databases are not supported yet."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    if "://" in url:
        raise ValueError(f"unsupported database {url!r}: give a SQLite file (sqlite:///path/to/reviews.db)")
    return url


def _review(row: tuple) -> Review:
    melody_id, decision, rating, tags, note, version, updated_at = row
    return Review(melody_id, decision, rating, tuple(json.loads(tags)), note, version, updated_at)
