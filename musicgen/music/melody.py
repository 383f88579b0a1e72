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

TICKS_PER_BEAT = 12
# Onset positions inside a beat that quantisation snaps to: the union of the
# sixteenth grid (0, 3, 6, 9) and the eighth-triplet grid (0, 4, 8).
_SNAP_POSITIONS = np.array([0, 3, 4, 6, 8, 9, 12])
_SNAP_MIDPOINTS = (_SNAP_POSITIONS[1:] + _SNAP_POSITIONS[:-1]) / 2

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NAME_TO_PC = {
    "C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4,
    "F": 5, "E#": 5, "F#": 6, "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9,
    "A#": 10, "BB": 10, "B": 11, "CB": 11,
}
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


def parse_key(key: str) -> tuple[int, str]:
    """'F# minor' -> (6, 'minor'). Unknown modes count as major."""
    parts = key.replace("-", "b").split()
    tonic = parts[0][0].upper() + parts[0][1:].upper()
    mode = parts[1].lower() if len(parts) > 1 else "major"
    if tonic not in _NAME_TO_PC:
        raise ValueError(f"unknown key {key!r}")
    return _NAME_TO_PC[tonic], ("minor" if mode == "minor" else "major")


def key_name(tonic_pc: int, mode: str) -> str:
    return f"{PITCH_CLASS_NAMES[tonic_pc % 12]} {mode}"


def key_from_sharps(sharps: int, minor: bool) -> str:
    """Key name from a key signature (number of sharps, negative for flats)."""
    tonic = (7 * sharps + (9 if minor else 0)) % 12
    return key_name(tonic, "minor" if minor else "major")


def _pitch_class_histogram(pitches: Sequence[int], durations: Sequence[float]) -> np.ndarray:
    hist = np.zeros(12)
    np.add.at(hist, np.asarray(pitches, dtype=np.int64) % 12, np.asarray(durations, dtype=float))
    return hist


def _key_profile(tonic: int, mode: str) -> np.ndarray:
    return np.roll(_MINOR_PROFILE if mode == "minor" else _MAJOR_PROFILE, tonic)


_ALL_PROFILES = np.stack([np.roll(profile, tonic) for profile in (_MAJOR_PROFILE, _MINOR_PROFILE) for tonic in range(12)])
_ALL_PROFILES_CENTRED = _ALL_PROFILES - _ALL_PROFILES.mean(axis=1, keepdims=True)
_ALL_PROFILES_CENTRED /= np.linalg.norm(_ALL_PROFILES_CENTRED, axis=1, keepdims=True)


def estimate_key(pitches: Sequence[int], durations: Sequence[float]) -> str:
    """Krumhansl–Schmuckler key finding on a duration-weighted pitch-class histogram
    (Pearson correlation with all 24 rotated profiles in one matrix product)."""
    hist = _pitch_class_histogram(pitches, durations)
    centred = hist - hist.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        return "C major"
    best = int(np.argmax(_ALL_PROFILES_CENTRED @ (centred / norm)))
    return key_name(best % 12, "major" if best < 12 else "minor")


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


def skyline(pitches: np.ndarray, onsets: np.ndarray, ends: np.ndarray) -> list[Note]:
    """Reduce overlapping notes to a monophonic line (Uitdenbogerd & Zobel's skyline).

    At each onset the highest note wins; a note is cut where the next kept note
    starts. Inputs are quantised ticks.
    """
    order = np.lexsort((-pitches, onsets))
    pitches, onsets, ends = pitches[order], onsets[order], ends[order]
    first = np.ones(len(onsets), dtype=bool)
    first[1:] = onsets[1:] != onsets[:-1]  # the highest note of each onset comes first
    pitches, onsets, ends = pitches[first], onsets[first], ends[first]
    ends[:-1] = np.minimum(ends[:-1], onsets[1:])
    keep = ends > onsets
    return list(map(Note, pitches[keep].tolist(), onsets[keep].tolist(), (ends - onsets)[keep].tolist()))


def quantise(
    pitches: Iterable[int],
    onsets_beats: Iterable[float],
    durations_beats: Iterable[float],
    time_signature: tuple[int, int] = (4, 4),
    key: str | None = None,
    tempo: float = 120.0,
    pickup_beats: float = 0.0,
    meta: dict | None = None,
) -> Melody:
    """Build a quantised Melody from raw notes in beats (quarter notes).

    Onsets and ends snap to the sixteenth/triplet grid, overlaps are removed by
    the skyline, and leading empty bars are dropped, so the first note falls in
    bar one. Every onset and end lands on the grid, so quantising is idempotent. ``pickup_beats`` is the length missing from an anacrusis bar, so
    a pickup lands on the upbeat rather than on the downbeat.
    """
    pitches = np.asarray(pitches, dtype=np.int64)
    onsets_beats = np.asarray(onsets_beats, dtype=np.float64) + pickup_beats
    durations_beats = np.asarray(durations_beats, dtype=np.float64)
    if pitches.size == 0:
        raise ValueError("no notes")
    onsets = snap(onsets_beats * TICKS_PER_BEAT)
    ends = snap((onsets_beats + durations_beats) * TICKS_PER_BEAT)
    # a note too short for the grid lasts until the next grid position
    ends = np.where(ends <= onsets, next_grid_position(onsets), ends)
    notes = skyline(pitches, onsets, ends)
    if not notes:
        raise ValueError("no notes left after quantisation")
    # drop whole leading bars, in steps that keep the beat grid where it was (9/8 bars are 4.5 beats)
    step = math.lcm(bar_ticks(time_signature), TICKS_PER_BEAT)
    shift = (notes[0].onset // step) * step
    if shift:
        notes = [Note(p, o - shift, d) for p, o, d in notes]
    notes = tuple(notes)
    if key is None:
        key = estimate_key([n.pitch for n in notes], [n.duration for n in notes])
    key = key_name(*parse_key(key))
    return Melody(notes, tuple(time_signature), key, float(tempo), dict(meta or {}))


def interval_fingerprints(melody: Melody, head_notes: int) -> tuple[str, str]:
    """Transposition-invariant hashes of intervals and rhythm: of the whole melody, and of its
    first ``head_notes`` notes (duplicate detection and leakage-free splits)."""
    # fromiter over the flattened tuples: ~6x faster than np.array on a tuple of NamedTuples
    flat = np.fromiter(itertools.chain.from_iterable(melody.notes), np.int32, 3 * len(melody.notes))
    pitch, onset, duration = flat.reshape(-1, 3).T
    steps = np.stack([np.diff(pitch), duration[:-1], np.diff(onset)], axis=1).astype("<i4")

    def digest(rows: np.ndarray) -> str:
        return hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()

    return digest(steps), digest(steps[: max(0, head_notes - 1)])
