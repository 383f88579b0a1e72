"""MIDI in and out, through symusic.

symusic parses a small file in tens of microseconds, about a hundred times
faster than pretty_midi, which is what lets preprocessing keep up with a large
corpus, and writes one ~70 times faster, which is what lets the bulk job keep
up with its sampler. pretty_midi is what the tests read every output back with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from musicgen.music.keys import key_from_sharps, key_to_sharps, parse_key
from musicgen.music.melody import TICKS_PER_BEAT, Melody, RawMelody, quantise
from musicgen.music.performance import Performance, velocities

MIDI_RESOLUTION = 480  # ticks per beat in written files, as pretty_midi writes them (a multiple of TICKS_PER_BEAT)
VELOCITY = 80
SECTION_MARKER = "section"  # a MIDI marker at each section start (Melody.sections), read back by parse_midi
LOOP_MARKERS = ("loopStart", "loopEnd")  # markers around a loop (meta["loop"]): whole bars, as engines want them


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
    if len(candidates) == 1:
        return candidates[0]
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
    return quantise(*parse_midi(data, meta))


def parse_midi(data: bytes, meta: dict | None = None) -> RawMelody:
    """Parse MIDI bytes into the melodic track's notes in beats, with meter, key and tempo
    (preprocessing quantises many of these at once)."""
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
        if min(time_signature) < 1:
            raise UnusableInput("bad_time_signature", "the time signature {}/{} is not a meter".format(*time_signature))
    key = None
    if len(score.key_signatures):
        ks = score.key_signatures[0]
        key = key_from_sharps(int(ks.key), bool(ks.tonality))
    tempo = round(float(score.tempos[0].qpm), 2) if len(score.tempos) else 120.0
    sections = tuple(m.time / tpq for m in score.markers if m.text == SECTION_MARKER)
    return RawMelody(
        melody_track.pitches,
        melody_track.onsets,
        melody_track.durations,
        time_signature=time_signature,
        key=key,
        tempo=tempo,
        meta={**(meta or {}), "track": melody_track.name},
        sections=sections,
    )


def write_midi(parts: Sequence[tuple[str, Melody]], performance: Performance | None = None) -> bytes:
    """MIDI bytes for one or more named melodies sharing the first one's meter, key and tempo.

    With a ``performance`` the tracks play on its instrument with accented velocities
    (:mod:`musicgen.music.performance`); without one, on the piano at one velocity, as the
    corpus export writes them. Written with symusic: pretty_midi's writer, which builds and
    validates a mido message per event, is ~70 times slower, and the bulk job writes a file per
    melody. Tests pin the file, note for note, to what pretty_midi's own writer makes.
    """
    import symusic

    first = parts[0][1]
    scale = MIDI_RESOLUTION // TICKS_PER_BEAT
    score = symusic.Score(MIDI_RESOLUTION)
    score.tempos.append(symusic.Tempo(0, qpm=first.tempo))
    score.time_signatures.append(symusic.TimeSignature(0, *first.time_signature))
    _, mode = parse_key(first.key)
    score.key_signatures.append(symusic.KeySignature(0, key_to_sharps(first.key), int(mode == "minor")))
    for tick in first.sections:
        score.markers.append(symusic.TextMeta(tick * scale, SECTION_MARKER))
    if first.meta.get("loop"):
        for tick, text in zip((0, first.n_bars * first.bar_ticks), LOOP_MARKERS):
            score.markers.append(symusic.TextMeta(tick * scale, text))
    for name, melody in parts:
        track = symusic.Track(name, program=performance.program if performance else 0)
        notes = melody.notes
        loudness = velocities(melody, performance) if performance else np.full(len(notes), VELOCITY)
        track.notes = symusic.Note.from_numpy(
            np.array([n.onset * scale for n in notes], dtype=np.int32),
            np.array([n.duration * scale for n in notes], dtype=np.int32),
            np.array([n.pitch for n in notes], dtype=np.int8),
            loudness.astype(np.int8),
        )
        score.tracks.append(track)
    return score.dumps_midi()
