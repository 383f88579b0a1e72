"""The one interchange type of musicgen, and pure functions over it.

A :class:`Melody` is a monophonic line on an integer grid of ``TICKS_PER_BEAT``
ticks per quarter note. Twelve ticks per beat hold sixteenths (3 ticks) and
eighth-note triplets (4 ticks) exactly, so quantising to this grid keeps
triplets. Every stage after parsing (tokenizers, models, writers) speaks this
type; nothing here imports torch or Ray.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from musicgen.music.keys import key_name, parse_key

TICKS_PER_BEAT = 12
# Onset positions inside a beat that quantisation snaps to: the union of the
# sixteenth grid (0, 3, 6, 9) and the eighth-triplet grid (0, 4, 8).
ONSET_GRID = (0, 3, 4, 6, 8, 9)
_SNAP_POSITIONS = np.array([*ONSET_GRID, TICKS_PER_BEAT])
_SNAP_MIDPOINTS = (_SNAP_POSITIONS[1:] + _SNAP_POSITIONS[:-1]) / 2

# Krumhansl–Kessler key profiles, used to estimate a key when the file names none.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class Note(NamedTuple):
    """A tuple, not a dataclass: preprocessing builds hundreds of thousands of them."""

    pitch: int  # MIDI pitch 0..127
    onset: int  # ticks from the start of the first bar
    duration: int  # ticks, > 0


@dataclass(frozen=True)
class Melody:
    """A quantised monophonic melody with the context needed to play it back."""

    notes: tuple[Note, ...]
    time_signature: tuple[int, int] = (4, 4)
    key: str = "C major"
    tempo: float = 120.0
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    # onsets (ticks) where a section of the written form starts, e.g. each pass of a repeated
    # strain of an AABB tune; empty when unknown. Tokens do not carry it, so round trips ignore it.
    sections: tuple[int, ...] = field(default=(), compare=False, hash=False)

    @property
    def bar_ticks(self) -> int:
        return bar_ticks(self.time_signature)

    @property
    def end(self) -> int:
        return max((n.onset + n.duration for n in self.notes), default=0)

    @property
    def n_bars(self) -> int:
        return math.ceil(self.end / self.bar_ticks) if self.notes else 0

    def transpose(self, semitones: int) -> Melody:
        tonic, mode = parse_key(self.key)
        notes = tuple(n._replace(pitch=n.pitch + semitones) for n in self.notes)
        if any(not 0 <= n.pitch <= 127 for n in notes):
            raise ValueError(f"transposing by {semitones} leaves the MIDI pitch range")
        return replace(self, notes=notes, key=key_name((tonic + semitones) % 12, mode))


def bar_ticks(time_signature: tuple[int, int]) -> int:
    numerator, denominator = time_signature
    return numerator * TICKS_PER_BEAT * 4 // denominator


def _pitch_class_histogram(pitches: Sequence[int], durations: Sequence[float]) -> np.ndarray:
    hist = np.zeros(12)
    np.add.at(hist, np.asarray(pitches, dtype=np.int64) % 12, np.asarray(durations, dtype=float))
    return hist


def _key_profile(tonic: int, mode: str) -> np.ndarray:
    return np.roll(_MINOR_PROFILE if mode == "minor" else _MAJOR_PROFILE, tonic)


_ALL_PROFILES = np.stack(
    [np.roll(profile, tonic) for profile in (_MAJOR_PROFILE, _MINOR_PROFILE) for tonic in range(12)]
)
_ALL_PROFILES_CENTRED = _ALL_PROFILES - _ALL_PROFILES.mean(axis=1, keepdims=True)
_ALL_PROFILES_CENTRED /= np.linalg.norm(_ALL_PROFILES_CENTRED, axis=1, keepdims=True)


def estimate_key(pitches: Sequence[int], durations: Sequence[float]) -> str:
    """Krumhansl–Schmuckler key finding of one melody (see :func:`_estimate_keys`)."""
    pitches = np.asarray(pitches, dtype=np.int64)
    return _estimate_keys(pitches, np.asarray(durations, dtype=np.float64), np.zeros(len(pitches), np.int64), 1)[0]


def _estimate_keys(pitches: np.ndarray, durations: np.ndarray, segment: np.ndarray, n: int) -> list[str]:
    """Krumhansl–Schmuckler key finding for every melody of a batch: Pearson correlation of each
    duration-weighted pitch-class histogram with all 24 rotated profiles, in one matrix product."""
    hist = np.bincount(segment * 12 + pitches % 12, weights=durations, minlength=12 * n).reshape(n, 12)
    centred = hist - hist.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    best = np.argmax(centred / np.maximum(norm, 1e-300) @ _ALL_PROFILES_CENTRED.T, axis=1)  # a flat histogram stays 0
    return [key_name(b % 12, "major" if b < 12 else "minor") if z > 0 else "C major"
            for b, z in zip(best.tolist(), norm[:, 0])]


def transpose_to_key(melody: Melody, key: str, low: int = 0, high: int = 127) -> Melody:
    """The melody moved into ``key`` and labelled with it.

    Models are trained on transposed data and have no key input, so the key is
    set afterwards: of the twelve transpositions (-6..+5 semitones) the one
    whose pitch-class histogram best fits ``key``'s Krumhansl profile wins (for a
    minor key and a major tune that is usually the relative-minor placement),
    then whole octaves keep it inside ``low..high`` where they can.
    """
    tonic, mode = parse_key(key)
    target = key_name(tonic, mode)
    if not melody.notes:
        return replace(melody, key=target)
    hist = _pitch_class_histogram([n.pitch for n in melody.notes], [n.duration for n in melody.notes])
    profile = _key_profile(tonic, mode)
    shift = max(range(-6, 6), key=lambda s: (np.corrcoef(np.roll(hist, s), profile)[0, 1]
                                              if hist.std() > 0 else 0.0, -abs(s)))
    pitches = [n.pitch for n in melody.notes]
    lo, hi = min(pitches) + shift, max(pitches) + shift
    while lo < low and hi + 12 <= high:
        shift, lo, hi = shift + 12, lo + 12, hi + 12
    while hi > high and lo - 12 >= low:
        shift, lo, hi = shift - 12, lo - 12, hi - 12
    if lo < 0 or hi > 127:
        raise ValueError(f"the melody spans {hi - lo} semitones and cannot be moved into {target} within MIDI range")
    return replace(melody, notes=tuple(n._replace(pitch=n.pitch + shift) for n in melody.notes), key=target)


def snap(ticks: np.ndarray) -> np.ndarray:
    """Snap tick positions to the nearest sixteenth or eighth-triplet position."""
    beat, within = np.divmod(np.asarray(ticks, dtype=np.float64), TICKS_PER_BEAT)
    nearest = _SNAP_POSITIONS[np.searchsorted(_SNAP_MIDPOINTS, within)]  # a tie goes to the earlier position
    return (beat * TICKS_PER_BEAT + nearest).astype(np.int64)


def next_grid_position(ticks: np.ndarray) -> np.ndarray:
    """The first snap position strictly after each (on-grid) tick position."""
    beat, within = np.divmod(np.asarray(ticks, dtype=np.int64), TICKS_PER_BEAT)
    following = _SNAP_POSITIONS[np.searchsorted(_SNAP_POSITIONS, within, side="right")]
    return beat * TICKS_PER_BEAT + following


class RawMelody(NamedTuple):
    """One melody as parsed, in beats (quarter notes), before quantisation."""

    pitches: np.ndarray
    onsets: np.ndarray  # beats
    durations: np.ndarray  # beats
    time_signature: tuple[int, int] = (4, 4)
    key: str | None = None  # None: estimated from the notes
    tempo: float = 120.0
    pickup_beats: float = 0.0
    meta: dict | None = None
    sections: tuple[float, ...] = ()  # beats, on the same axis as the onsets


@dataclass(frozen=True)
class MelodyBatch:
    """Many quantised melodies as flat note arrays: melody ``i`` holds notes
    ``offsets[i]:offsets[i + 1]``, sorted by onset.

    Preprocessing quantises, tokenizes and fingerprints whole batches with a
    fixed number of NumPy calls, where a per-melody loop spent most of its time
    in NumPy's per-call overhead and in building ``Note`` tuples. The
    single-melody functions (``quantise``, the events tokenizer, the
    fingerprints) are this code run on a batch of one.
    """

    pitches: np.ndarray
    onsets: np.ndarray
    durations: np.ndarray
    offsets: np.ndarray
    time_signatures: list[tuple[int, int]]
    keys: list[str]
    tempos: list[float]
    metas: list[dict]
    sections: list[tuple[int, ...]] | None = None  # per melody; None: no melody of the batch knows its sections

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_notes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def bar_ticks(self) -> np.ndarray:
        return np.array([bar_ticks(ts) for ts in self.time_signatures], dtype=np.int64)

    @property
    def segment(self) -> np.ndarray:
        """The melody index of every note."""
        return np.repeat(np.arange(len(self)), self.n_notes)

    @property
    def n_bars(self) -> np.ndarray:
        ends = np.zeros(len(self), dtype=np.int64)
        np.maximum.at(ends, self.segment, self.onsets + self.durations)
        return -(-ends // self.bar_ticks)

    def melody(self, i: int) -> Melody:
        a, b = self.offsets[i], self.offsets[i + 1]
        notes = map(Note, self.pitches[a:b].tolist(), self.onsets[a:b].tolist(), self.durations[a:b].tolist())
        sections = self.sections[i] if self.sections is not None else ()
        return Melody(tuple(notes), self.time_signatures[i], self.keys[i], self.tempos[i], dict(self.metas[i]),
                      sections)

    @classmethod
    def from_melodies(cls, melodies: Sequence[Melody]) -> MelodyBatch:
        flat = np.fromiter(
            itertools.chain.from_iterable(itertools.chain.from_iterable(m.notes for m in melodies)),
            np.int64,
            3 * sum(len(m.notes) for m in melodies),
        ).reshape(-1, 3)
        return cls(
            flat[:, 0].copy(),
            flat[:, 1].copy(),
            flat[:, 2].copy(),
            np.cumsum([0, *(len(m.notes) for m in melodies)]),
            [m.time_signature for m in melodies],
            [m.key for m in melodies],
            [m.tempo for m in melodies],
            [m.meta for m in melodies],
            [m.sections for m in melodies] if any(m.sections for m in melodies) else None,
        )

    @classmethod
    def concat(cls, batches: Sequence[MelodyBatch]) -> MelodyBatch:
        starts = np.cumsum([0, *(len(b.pitches) for b in batches)])
        return cls(
            np.concatenate([b.pitches for b in batches]),
            np.concatenate([b.onsets for b in batches]),
            np.concatenate([b.durations for b in batches]),
            np.concatenate([[0], *(b.offsets[1:] + s for b, s in zip(batches, starts))]).astype(np.int64),
            [x for b in batches for x in b.time_signatures],
            [x for b in batches for x in b.keys],
            [x for b in batches for x in b.tempos],
            [x for b in batches for x in b.metas],
            None if all(b.sections is None for b in batches)
            else [x for b in batches for x in (b.sections if b.sections is not None else [()] * len(b))],
        )


def skyline(pitches: np.ndarray, onsets: np.ndarray, ends: np.ndarray, segment: np.ndarray | None = None) -> np.ndarray:
    """Reduce overlapping notes to a monophonic line (Uitdenbogerd & Zobel's skyline).

    At each onset the highest note wins; a note is cut where the next kept note
    starts. Inputs are quantised ticks, and ``segment`` tells the melodies of a
    batch apart. Returns the indices of the kept notes in onset order and their
    (possibly cut) ends, as ``(order, ends)``.
    """
    segment = np.zeros(len(onsets), dtype=np.int64) if segment is None else segment
    order = np.lexsort((-pitches, onsets, segment))
    onsets, segment = onsets[order], segment[order]
    first = np.ones(len(onsets), dtype=bool)
    # the highest note of each onset comes first
    first[1:] = (onsets[1:] != onsets[:-1]) | (segment[1:] != segment[:-1])
    order, onsets, segment = order[first], onsets[first], segment[first]
    ends = ends[order]
    same = segment[1:] == segment[:-1]
    ends[:-1] = np.where(same, np.minimum(ends[:-1], onsets[1:]), ends[:-1])
    keep = ends > onsets
    return order[keep], ends[keep]


def quantise_many(raws: Sequence[RawMelody]) -> MelodyBatch:
    """Quantise many parsed melodies at once (see :func:`quantise`).

    A melody with no notes left after quantisation comes back empty, for the
    caller to report; nothing here raises for one bad melody of a batch.
    """
    lengths = [len(r.pitches) for r in raws]
    segment = np.repeat(np.arange(len(raws)), lengths)
    pitches = np.concatenate([np.asarray(r.pitches, dtype=np.int64) for r in raws]) if raws else np.zeros(0, np.int64)
    onsets_beats = (np.concatenate([np.asarray(r.onsets, dtype=np.float64) + r.pickup_beats for r in raws])
                    if raws else np.zeros(0))
    durations_beats = np.concatenate([np.asarray(r.durations, dtype=np.float64) for r in raws]) if raws else np.zeros(0)
    onsets = snap(onsets_beats * TICKS_PER_BEAT)
    ends = snap((onsets_beats + durations_beats) * TICKS_PER_BEAT)
    # a note too short for the grid lasts until the next grid position
    ends = np.where(ends <= onsets, next_grid_position(onsets), ends)
    kept, ends = skyline(pitches, onsets, ends, segment)
    pitches, onsets, segment = pitches[kept], onsets[kept], segment[kept]
    counts = np.bincount(segment, minlength=len(raws))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # drop whole leading bars, in steps that keep the beat grid where it was (9/8 bars are 4.5 beats)
    steps = np.array([math.lcm(bar_ticks(r.time_signature), TICKS_PER_BEAT) for r in raws], dtype=np.int64)
    firsts = np.zeros(len(raws), dtype=np.int64)
    firsts[counts > 0] = onsets[offsets[:-1][counts > 0]]
    durations = ends - onsets
    shifts = firsts // steps * steps
    onsets = onsets - shifts[segment]
    estimated = _estimate_keys(pitches, durations, segment, len(raws)) if any(r.key is None for r in raws) else []
    keys = [key_name(*parse_key(r.key)) if r.key is not None else estimated[i] for i, r in enumerate(raws)]
    return MelodyBatch(
        pitches,
        onsets,
        durations,
        offsets,
        [tuple(r.time_signature) for r in raws],
        keys,
        [float(r.tempo) for r in raws],
        [dict(r.meta or {}) for r in raws],
        _section_ticks(raws, shifts, offsets, onsets, durations) if any(len(r.sections) for r in raws) else None,
    )


def _section_ticks(raws: Sequence[RawMelody], shifts: np.ndarray, offsets: np.ndarray, onsets: np.ndarray,
                   durations: np.ndarray) -> list[tuple[int, ...]]:
    """Section starts in ticks, moved with the notes (anacrusis, dropped leading bars): the melody's
    first note, then each start inside the melody at least a bar after the one before."""
    out = []
    for i, raw in enumerate(raws):
        a, b = offsets[i], offsets[i + 1]
        if not len(raw.sections) or a == b:
            out.append(())
            continue
        ticks = snap((np.asarray(raw.sections, dtype=np.float64) + raw.pickup_beats) * TICKS_PER_BEAT) - shifts[i]
        end = int((onsets[a:b] + durations[a:b]).max())
        starts = [int(onsets[a])]
        for tick in sorted(set(ticks[(ticks > starts[0]) & (ticks < end)].tolist())):
            if tick - starts[-1] >= bar_ticks(raw.time_signature):  # a bar line right after a pickup is no new section
                starts.append(tick)
        out.append(tuple(starts))
    return out


def quantise(
    pitches: Iterable[int],
    onsets_beats: Iterable[float],
    durations_beats: Iterable[float],
    time_signature: tuple[int, int] = (4, 4),
    key: str | None = None,
    tempo: float = 120.0,
    pickup_beats: float = 0.0,
    meta: dict | None = None,
    sections: Sequence[float] = (),
) -> Melody:
    """Build a quantised Melody from raw notes in beats (quarter notes).

    Onsets and ends snap to the sixteenth/triplet grid, overlaps are removed by
    the skyline, and leading empty bars are dropped, so the first note falls in
    bar one. Every onset and end lands on the grid, so quantising is idempotent.
    ``pickup_beats`` is the length missing from an anacrusis bar, so a pickup
    lands on the upbeat rather than on the downbeat.
    """
    raw = RawMelody(np.asarray(pitches), np.asarray(onsets_beats), np.asarray(durations_beats),
                    time_signature, key, tempo, pickup_beats, meta, tuple(sections))
    if raw.pitches.size == 0:
        raise ValueError("no notes")
    batch = quantise_many([raw])
    if batch.offsets[1] == 0:
        raise ValueError("no notes left after quantisation")
    return batch.melody(0)


def interval_fingerprints_many(batch: MelodyBatch, head_notes: int) -> tuple[list[str], list[str]]:
    """Transposition-invariant hashes of intervals and rhythm: of each whole melody, and of its
    first ``head_notes`` notes (duplicate detection and leakage-free splits)."""
    pitch, onset, duration = batch.pitches, batch.onsets, batch.durations
    # row j describes the step from note j to note j + 1 (rows across two melodies are never hashed)
    steps = np.stack([np.diff(pitch), duration[:-1], np.diff(onset)], axis=1).astype("<i4")
    data = memoryview(steps.tobytes())
    row = 3 * 4
    full, head = [], []
    for a, b in zip(batch.offsets[:-1].tolist(), batch.offsets[1:].tolist()):
        last = max(a, b - 1)
        full.append(hashlib.blake2b(data[a * row : last * row], digest_size=8).hexdigest())
        head_end = min(last, a + max(0, head_notes - 1))
        head.append(hashlib.blake2b(data[a * row : head_end * row], digest_size=8).hexdigest())
    return full, head


def interval_fingerprints(melody: Melody, head_notes: int) -> tuple[str, str]:
    """:func:`interval_fingerprints_many` of one melody."""
    full, head = interval_fingerprints_many(MelodyBatch.from_melodies([melody]), head_notes)
    return full[0], head[0]
