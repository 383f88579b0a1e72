"""How a style is played back: its General MIDI instrument, tempo and dynamics.

Rules, not learnt: the corpus files carry no instrument, dynamics or (mostly) tempo. A request may
override the instrument and tempo (in quarter notes a minute, as MIDI stores it); a style this
table does not know plays on the piano at 100 beats a minute. Velocities follow the meter (a
stressed downbeat, a lighter middle beat, softer off-beats), as a player would shape a line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from musicgen.music.melody import TICKS_PER_BEAT, Melody


@dataclass(frozen=True)
class Performance:
    program: int = 0  # General MIDI program, 0-127 (0: acoustic grand piano)
    tempo: float = 100.0  # beats of the meter a minute (a dotted quarter in 6/8), when a request names none
    velocity: int = 80  # loudness of an unstressed note on the beat
    accent: int = 12  # added on the downbeat; half of it on the bar's middle beat, a third taken off off-beats

    def __post_init__(self):
        if not 0 <= self.program <= 127:
            raise ValueError(f"a General MIDI program is 0-127, not {self.program}")
        if not 20 <= self.tempo <= 300:
            raise ValueError(f"tempo must be 20-300 beats a minute, not {self.tempo}")

    def quarter_tempo(self, time_signature: tuple[int, int]) -> float:
        """The tempo in quarter notes a minute (what MIDI files store) for a meter."""
        return round(self.tempo * beat_ticks(time_signature) / TICKS_PER_BEAT, 2)


STYLE_PERFORMANCE = {
    "bach_chorale": Performance(program=19, tempo=66, velocity=84, accent=6),  # church organ, a congregation's pace
    "irish_folk": Performance(program=110, tempo=108, velocity=84, accent=18),  # fiddle, dance tempo
    "german_folk": Performance(program=21, tempo=96, velocity=80, accent=14),  # accordion
    "chinese_folk": Performance(program=73, tempo=76, velocity=76, accent=10),  # flute (dizi's nearest GM voice)
    "renaissance": Performance(program=52, tempo=60, velocity=76, accent=6),  # choir aahs, a tactus of half notes
}
GM_NAMES = {0: "Acoustic Grand Piano", 19: "Church Organ", 21: "Accordion", 40: "Violin", 52: "Choir Aahs",
            68: "Oboe", 71: "Clarinet", 73: "Flute", 74: "Recorder", 75: "Pan Flute", 78: "Whistle", 110: "Fiddle"}


def performance_for(style: str | None, program: int | None = None) -> Performance:
    """The style's performance, on a request's instrument where it names one."""
    performance = STYLE_PERFORMANCE.get(style or "", Performance())
    return replace(performance, program=program) if program is not None else performance


def beat_ticks(time_signature: tuple[int, int]) -> int:
    """Ticks of the meter's beat: a dotted quarter in compound meters (6/8, 9/8, 12/8), else the denominator's note."""
    numerator, denominator = time_signature
    note = TICKS_PER_BEAT * 4 // denominator
    return 3 * note if denominator >= 8 and numerator % 3 == 0 and numerator > 3 else note


def velocities(melody: Melody, performance: Performance) -> np.ndarray:
    """One MIDI velocity per note: accents by where the note falls in its bar."""
    bar, beat = melody.bar_ticks, beat_ticks(melody.time_signature)
    beats = max(1, bar // beat)
    position = np.array([n.onset for n in melody.notes], dtype=np.int64) % bar
    on_beat = position % beat == 0
    middle = beats % 2 == 0 and beats > 2
    out = np.full(len(position), performance.velocity - performance.accent // 3, dtype=np.int64)
    out[on_beat] = performance.velocity
    if middle:
        out[position == bar // 2] = performance.velocity + performance.accent // 2
    out[position == 0] = performance.velocity + performance.accent
    return np.clip(out, 1, 127)
