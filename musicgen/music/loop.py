"""A loop's seam: how its end leads back into its start, and where a loop may start.

A loop is heard end to start over and over, so the step from its last note to its first is as much
part of it as any other (``seam_interval``); a seam sounds where that step is one the style's lines
seldom take, or where the last note comes to a full stop. A loop sampled whole may start at any of
its phrases that opens on a note (``loop_starts``, ``rotated``): turned round, its old seam is inside
it and its new one is a step the model took between two of its own phrases. Pure functions on
``Melody``: the form-aware sampler picks and mends loops with them, the measurements judge them.
"""

from __future__ import annotations

from dataclasses import replace

from musicgen.music.form import PHRASE_BARS, held, last_note, notes_before, scale_degree
from musicgen.music.melody import Melody


def seam_interval(melody: Melody, end_tick: int | None = None) -> int | None:
    """Semitones from the last note (before ``end_tick``) back to the first: the step a loop takes
    across its seam; None without notes."""
    last = last_note(melody, end_tick)
    return melody.notes[0].pitch - last.pitch if last is not None else None


def lead_into_start(melody: Melody, end_tick: int, target: int) -> Melody:
    """``melody`` with its last note before ``end_tick`` moved so that the loop's seam takes the
    ``target`` interval into the first note, where the moved note stays on the key's scale (or on a
    pitch class the loop already uses), leaps from the note before it no further than the loop's own
    largest leap, and is no full stop; else ``melody`` as it was. The last resort of a loop none of whose
    sampled endings took the interval aimed at, as ``close_on_tonic`` is a tune's."""
    ending = [i for i, n in enumerate(melody.notes) if n.onset < end_tick]
    if len(ending) < 2 or seam_interval(melody, end_tick) == target:
        return melody
    i = ending[-1]
    last, before = melody.notes[i], melody.notes[i - 1]
    pitch = melody.notes[0].pitch - target
    leaps = [abs(b.pitch - a.pitch) for a, b in zip(melody.notes[: i + 1], melody.notes[1 : i + 1])]
    degree = scale_degree(pitch, melody.key)
    on_scale = degree is not None or pitch % 12 in {n.pitch % 12 for n in melody.notes}
    full_stop = degree == 1 and held(last, melody)
    if not (0 <= pitch <= 127 and on_scale and abs(pitch - before.pitch) <= max(leaps) and not full_stop):
        return melody
    return replace(melody, notes=(*melody.notes[:i], last._replace(pitch=pitch), *melody.notes[i + 1 :]))


def seam_score(melody: Melody, end_tick: int, target: int | None = None) -> int:
    """How well a loop ending at ``end_tick`` leads back into its start: 3 for a step (up to 2
    semitones) to the first note, 2 up to a fourth, 1 up to a fifth, or, with a ``target`` interval
    (semitones, signed as ``seam_interval``), 3 less how far the seam is from it (at least 0); plus 2
    unless the last note is a held tonic (a full stop the loop would stumble over). (A loop's opening
    is no candidate's choice: the sampler makes it open on a note.)"""
    last = last_note(melody, end_tick)
    if last is None:
        return 0
    interval = melody.notes[0].pitch - last.pitch
    if target is not None:
        smooth = 3 - min(3, abs(interval - target))
    else:
        smooth = 3 if abs(interval) <= 2 else 2 if abs(interval) <= 5 else 1 if abs(interval) <= 7 else 0
    full_stop = scale_degree(last.pitch, melody.key) == 1 and held(last, melody)
    return smooth + 2 * (not full_stop)


def loop_starts(melody: Melody, bars: int) -> list[int]:
    """The bars of a ``bars``-bar loop it may start at: bar 0, where it was sampled to start, and the
    first bar of each later phrase of ``PHRASE_BARS`` where a note begins on the bar line (a loop
    opens on a note, and a note held over the bar line would be cut in two)."""
    onsets = {n.onset for n in melody.notes}
    return [0, *(bar for bar in range(PHRASE_BARS, bars, PHRASE_BARS) if bar * melody.bar_ticks in onsets)]


def rotated(melody: Melody, bar: int, end_tick: int) -> Melody:
    """The loop ``melody`` (its notes before ``end_tick``) started at ``bar``: the bars before it move
    to its end, each note as long as before (the last cut at the loop's end, as a loop's is)."""
    cut = bar * melody.bar_ticks
    if cut == 0:
        return melody
    notes = notes_before(melody.notes, end_tick)
    head = tuple(n._replace(onset=n.onset - cut) for n in notes if n.onset >= cut)
    tail = tuple(n._replace(onset=n.onset + end_tick - cut) for n in notes_before(notes, cut))
    return replace(melody, notes=(*head, *tail))
