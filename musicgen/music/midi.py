"""MIDI in (symusic, for speed) and out (pretty_midi, for its friendly API).

symusic parses a small file in tens of microseconds, about a hundred times
faster than pretty_midi, which is what lets preprocessing keep up with a large
corpus. pretty_midi stays the writer: its object model is what users know.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from musicgen.music.melody import (
    TICKS_PER_BEAT,
    Melody,
    key_from_sharps,
    parse_key,
    quantise,
)


class UnusableInput(ValueError):
    """An input file that yields no melody; ``kind`` is a short machine-readable reason."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


MELODY_TRACK_NAME = re.compile(r"melod|lead|vocal|voice|voix|stimme|sopran|canto|tune|sing", re.I)
_MIN_NOTES = 8


@dataclass(frozen=True)
class TrackNotes:
    """One MIDI track as arrays in beats, before quantisation."""

    name: str
    program: int
    is_drum: bool
    pitches: np.ndarray
    onsets: np.ndarray
    durations: np.ndarray

    @property
    def monophony(self) -> float:
        """Share of notes that start after the previous note ended (1.0 = a single line)."""
        if len(self.onsets) < 2:
            return 1.0
        order = np.argsort(self.onsets, kind="stable")
        ends = np.maximum.accumulate((self.onsets + self.durations)[order])
        return float(np.mean(self.onsets[order][1:] >= ends[:-1] - 1e-6))


def pick_melody_track(tracks: Sequence[TrackNotes]) -> TrackNotes:
    """Choose the melodic line of a multi-track file.

    A non-drum track named like a melody (melody, lead, vocal, soprano, ...) wins;
    otherwise the best candidate by a score that favours high, mostly
    monophonic, busy tracks and disfavours bass programs.
    """
    candidates = [t for t in tracks if not t.is_drum and len(t.pitches) >= _MIN_NOTES]
    if not candidates:
        candidates = [t for t in tracks if not t.is_drum and len(t.pitches) > 0]
    if not candidates:
        raise UnusableInput("no_notes", "no pitched notes outside the drum channel")
    named = [t for t in candidates if MELODY_TRACK_NAME.search(t.name or "")]
    if named:
        return max(named, key=lambda t: float(np.mean(t.pitches)))
    most = max(len(t.pitches) for t in candidates)

    def score(t: TrackNotes) -> float:
        bass = 12.0 if 32 <= t.program <= 39 else 0.0
        return float(np.mean(t.pitches)) + 24.0 * t.monophony + 6.0 * len(t.pitches) / most - bass

    return max(candidates, key=score)


def read_midi(data: bytes, meta: dict | None = None) -> Melody:
    """Parse MIDI bytes and return the quantised melody of its melodic track."""
    from symusic import Score

    if len(data) < 14 or not data.startswith(b"MThd"):
        raise UnusableInput("not_midi", "no MIDI header (MThd)")
    try:
        score = Score.from_midi(data)
    except Exception as exc:  # symusic raises plain RuntimeErrors on corrupt input
        raise UnusableInput("corrupt_midi", f"could not parse MIDI: {exc}") from exc
    tpq = float(score.tpq)
    tracks = []
    for track in score.tracks:
        arrays = track.notes.numpy()
        if arrays["time"].size == 0:
            continue
        tracks.append(
            TrackNotes(
                track.name,
                int(track.program),
                bool(track.is_drum),
                arrays["pitch"].astype(np.int64),
                arrays["time"] / tpq,
                arrays["duration"] / tpq,
            )
        )
    if not tracks:
        raise UnusableInput("no_notes", "the file holds no notes")
    melody_track = pick_melody_track(tracks)
    time_signature = (4, 4)
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        time_signature = (int(ts.numerator), int(ts.denominator))
    key = None
    if len(score.key_signatures):
        ks = score.key_signatures[0]
        key = key_from_sharps(int(ks.key), bool(ks.tonality))
    tempo = round(float(score.tempos[0].qpm), 2) if len(score.tempos) else 120.0
    return quantise(
        melody_track.pitches,
        melody_track.onsets,
        melody_track.durations,
        time_signature=time_signature,
        key=key,
        tempo=tempo,
        meta={**(meta or {}), "track": melody_track.name},
    )


def _key_number(key: str) -> int:
    tonic, mode = parse_key(key)
    return tonic + (12 if mode == "minor" else 0)


def write_midi(parts: Sequence[tuple[str, Melody]], program: int = 0) -> bytes:
    """MIDI bytes for one or more named melodies sharing the first one's meter, key and tempo."""
    import pretty_midi

    first = parts[0][1]
    seconds_per_tick = 60.0 / first.tempo / TICKS_PER_BEAT
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=first.tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*first.time_signature, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(_key_number(first.key), 0.0))
    for name, melody in parts:
        instrument = pretty_midi.Instrument(program=program, name=name)
        instrument.notes = [
            pretty_midi.Note(
                velocity=80,
                pitch=n.pitch,
                start=n.onset * seconds_per_tick,
                end=(n.onset + n.duration) * seconds_per_tick,
            )
            for n in melody.notes
        ]
        pm.instruments.append(instrument)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()
