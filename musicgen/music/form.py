"""Musical form as letters: which sections of a tune return (AABB, ABAC) and which are new.

A form string names each section of a tune with a letter: a repeated letter is the same
material, a new letter new material (folk-rnn's and TunesFormer's view of folk tunes). The
functions here read a form off a melody (from the section starts recorded at ingest, or from
fixed-length sections), compare sections bar by bar, and judge whether a melody keeps a form it
was asked for. Pure functions on ``Melody``: the corpus measurement, the form-aware sampler and
the tests share them.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from musicgen.music.keys import MAJOR_SCALE, MINOR_SCALE, mode_family, parse_key
from musicgen.music.melody import Melody, Note
from musicgen.music.metrics import bar_self_similarity, repeated_bars
from musicgen.music.performance import beat_ticks

MAX_SECTIONS = 8
SAME_MATERIAL = 0.5  # mean bar similarity at or above which two sections are the same material
LETTERS = string.ascii_uppercase


def parse_form(text: str) -> str:
    """A validated form: 1 to ``MAX_SECTIONS`` letters, starting with A and bringing each new letter
    in order (AABB, ABAC, AAB); lower case is accepted."""
    form = text.strip().upper()
    if not 1 <= len(form) <= MAX_SECTIONS or any(c not in LETTERS for c in form):
        raise ValueError(f"a form is 1 to {MAX_SECTIONS} letters such as AABB or ABAC, got {text!r}")
    seen = ""
    for c in form:
        if c not in seen:
            if c != LETTERS[len(seen)]:
                raise ValueError(f"a form starts with A and brings in each new letter in order "
                                 f"(AABB, ABAC), got {text!r}: {c!r} comes before {LETTERS[len(seen)]!r}")
            seen += c
    return form


def section_bar_ranges(melody: Melody) -> list[tuple[int, int]]:
    """[first bar, end bar) of each section, from the section starts recorded at ingest (one section
    for the whole melody when none are known); starts within a bar (a pickup into the section) snap to
    the nearest bar line, and the pickup bar of a tune belongs to its first section."""
    bar, n_bars = melody.bar_ticks, melody.n_bars
    starts = {int(round(t / bar)) for t in melody.sections}
    if min(starts, default=0) == 1 and opens_after_bar_line(melody):
        starts.discard(1)  # the first section starts with its pickup in bar 0, not with a section of its own
    starts = sorted(s for s in starts | {0} if 0 <= s < n_bars)
    return [(a, b) for a, b in zip(starts, [*starts[1:], n_bars]) if b > a]


def fixed_bar_ranges(n_sections: int, section_bars: int, pickup: int = 0) -> list[tuple[int, int]]:
    """The sections of a tune made of ``n_sections`` sections of ``section_bars`` bars each, after
    ``pickup`` bars (0 or 1) that belong to the first section."""
    return [(0 if i == 0 else i * section_bars + pickup, (i + 1) * section_bars + pickup) for i in range(n_sections)]


def opens_after_bar_line(melody: Melody) -> bool:
    """Whether ``melody``'s first note comes after its first bar line: a rest, then a pickup."""
    return bool(melody.notes) and melody.notes[0].onset > 0


def pickup_bars(melody: Melody, section_bars: int) -> int:
    """1 where ``melody`` opens with a pickup bar ahead of whole sections of ``section_bars`` (its first
    note after the bar line, and one bar more than a whole number of sections), else 0."""
    return int(opens_after_bar_line(melody) and melody.n_bars % section_bars == 1)


def section_similarity(similarity: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """Mean similarity of the aligned bars of two sections (``bar_self_similarity``'s matrix), counting
    the bars one section has beyond the other's length as 0. Sections are aligned at their ends: a
    first section that also holds the tune's pickup bar lines up with its return."""
    length = max(a[1] - a[0], b[1] - b[0])
    aligned = min(a[1] - a[0], b[1] - b[0])
    total = sum(similarity[a[1] - aligned + i, b[1] - aligned + i] for i in range(aligned)
                if a[1] - aligned + i < len(similarity) and b[1] - aligned + i < len(similarity))
    return float(total / length) if length else 1.0


def form_letters(melody: Melody, ranges: Sequence[tuple[int, int]], same: float = SAME_MATERIAL,
                 similarity: np.ndarray | None = None) -> str:
    """The form of ``melody`` cut into ``ranges``: each section takes the letter of the earlier section
    it is most like, if at least ``same`` alike, or the next new letter (``similarity``: the melody's
    ``bar_self_similarity``, where the caller has it)."""
    similarity = _padded_similarity(melody, max((b for _, b in ranges), default=0), similarity)
    letters: list[str] = []
    first_of: dict[str, tuple[int, int]] = {}
    for section in ranges:
        scores = {letter: section_similarity(similarity, first, section) for letter, first in first_of.items()}
        best = max(scores, key=scores.get, default=None)
        if best is not None and scores[best] >= same:
            letters.append(best)
        else:
            letter = LETTERS[min(len(first_of), len(LETTERS) - 1)]
            first_of[letter] = section
            letters.append(letter)
    return "".join(letters)


def written_form(melody: Melody) -> str:
    """The form of a corpus melody from its recorded section starts (one letter when none are known)."""
    return form_letters(melody, section_bar_ranges(melody))


THROUGH_COMPOSED = "none"  # the form label of a tune whose sections cannot be told
PHRASE_BARS = 4  # where no sections are written, a tune is read as phrases of this many bars


def phrase_bar_ranges(melody: Melody, phrase_bars: int = PHRASE_BARS) -> list[tuple[int, int]]:
    """A tune without written sections cut into phrases of ``phrase_bars`` (a pickup bar belongs to
    the first), or [] where its bars are not a whole number of phrases."""
    pickup = pickup_bars(melody, phrase_bars)
    if (melody.n_bars - pickup) % phrase_bars or melody.n_bars - pickup < 2 * phrase_bars:
        return []
    return fixed_bar_ranges((melody.n_bars - pickup) // phrase_bars, phrase_bars, pickup)


def form_label(melody: Melody, similarity: np.ndarray | None = None) -> str:
    """A corpus melody's form and section length as ``FORM:BARS`` (``AABB:8``): from its written
    sections (the median length), else from its phrases of ``PHRASE_BARS`` compared bar by bar (the
    Essen songs and Palestrina's lines carry no repeat signs, but their phrases return too); or
    ``THROUGH_COMPOSED`` where neither gives 2 to ``MAX_SECTIONS`` sections. What a style's form mix
    counts, and what ``--form auto`` draws from."""
    ranges = section_bar_ranges(melody)
    if len(ranges) < 2:
        ranges = phrase_bar_ranges(melody)
    if not 2 <= len(ranges) <= MAX_SECTIONS:
        return THROUGH_COMPOSED
    lengths = sorted(b - a for a, b in ranges)
    return f"{form_letters(melody, ranges, similarity=similarity)}:{lengths[(len(lengths) - 1) // 2]}"


Copies = tuple[tuple[int, int], ...]  # (bar, the earlier bar it repeats): what ``repeated_bars`` gives


COPIES_PER_FORM = 24  # melodies of each style and form whose repeated bars and lengths a form mix keeps


@dataclass(frozen=True)
class FormMix:
    """What ``--form auto`` draws a style's tunes from: how many training melodies have each
    ``form_label`` (``forms``), and for each label the bars that repeat an earlier bar in some of
    those melodies (``copies``: a list of ``Copies`` a label) and the same melodies' ``whole_bars``, in
    the same order (``lengths``: the length a through-composed tune is drawn with). Built from the
    training melodies by ``tally``, kept in stats.json and a model's metadata as ``to_stats`` writes
    it (the one place that layout is written and read)."""

    forms: Mapping[str, int] = field(default_factory=dict)
    copies: Mapping[str, Sequence[Copies]] = field(default_factory=dict)
    lengths: Mapping[str, Sequence[int]] = field(default_factory=dict)

    @classmethod
    def tally(cls, shapes: Iterable[tuple[str, Copies, int]]) -> FormMix:
        """The mix of one style's melodies given as (``form_label``, ``repeated_bars``, ``whole_bars``),
        in an order that does not favour any (preprocessing gives them by id, a hash): every label
        counted, the first ``COPIES_PER_FORM`` of each kept; the most common label first."""
        forms: Counter[str] = Counter()
        copies: dict[str, list[Copies]] = {}
        lengths: dict[str, list[int]] = {}
        for label, repeated, bars in shapes:
            forms[label] += 1
            if forms[label] <= COPIES_PER_FORM:
                copies.setdefault(label, []).append(repeated)
                lengths.setdefault(label, []).append(bars)
        order = [label for label, _ in forms.most_common()]
        return cls({k: forms[k] for k in order}, {k: copies[k] for k in order}, {k: lengths[k] for k in order})

    def to_stats(self) -> dict:
        """The mix as one style's entry of stats.json keeps it (``forms``, ``copies`` as
        ``format_copies`` text, ``lengths``)."""
        return {"forms": dict(self.forms),
                "copies": {label: [format_copies(c) for c in kept] for label, kept in self.copies.items()},
                "lengths": {label: list(kept) for label, kept in self.lengths.items()}}

    @classmethod
    def from_stats(cls, entry: Mapping) -> FormMix:
        """The mix ``to_stats`` wrote; empty parts where the stats predate them (no lengths, no copies)."""
        copies = {label: [parse_copies(text) for text in texts] for label, texts in (entry.get("copies") or {}).items()}
        return cls(dict(entry.get("forms") or {}), copies, dict(entry.get("lengths") or {}))


def format_copies(copies: Copies) -> str:
    """``Copies`` as text, ``"4<0 5<1"`` (bar 4 repeats bar 0...): how stats.json and a model's metadata keep them."""
    return " ".join(f"{bar}<{source}" for bar, source in copies)


def parse_copies(text: str) -> Copies:
    """The ``Copies`` that ``format_copies`` wrote."""
    return tuple(tuple(map(int, pair.split("<"))) for pair in text.split())


def whole_bars(melody: Melody) -> int:
    """The bars of ``melody`` after its pickup bar, if it opens with one (its first note after the bar
    line): the length a through-composed tune is sampled with, ahead of which its own pickup comes."""
    return melody.n_bars - int(opens_after_bar_line(melody))


def form_and_copies(melody: Melody, max_bars: int) -> tuple[str, Copies]:
    """A corpus melody's ``form_label`` and its ``repeated_bars`` among its first ``max_bars`` (the
    longest tune a request may ask for), from one bar-similarity matrix where the melody is no longer:
    what preprocessing records per style and form, and what ``--form auto`` draws a tune's shape from."""
    if melody.n_bars <= max_bars:
        similarity = bar_self_similarity(melody)
        return form_label(melody, similarity), repeated_bars(similarity)
    head = replace(melody, notes=tuple(n for n in melody.notes if n.onset < max_bars * melody.bar_ticks))
    return form_label(melody), repeated_bars(bar_self_similarity(head))


def repeats_in(melody: Melody, start_bar: int, end_bar: int) -> int:
    """How many of the bars [start_bar, end_bar) of ``melody`` repeat an earlier bar exactly (``repeated_bars``)."""
    return sum(start_bar <= bar < end_bar for bar, _ in repeated_bars(bar_self_similarity(melody)))


def form_adherence(melody: Melody, form: str, section_bars: int, varied_bars: int = 0) -> bool:
    """Whether ``melody`` keeps ``form`` in sections of ``section_bars`` (after its pickup bar, if it
    has one): every return of a letter repeats the letter's first section exactly except its last
    ``varied_bars`` bars, and the first sections of different letters are not the same material."""
    pickup = pickup_bars(melody, section_bars)
    ranges = fixed_bar_ranges(len(form), section_bars, pickup)
    similarity = _padded_similarity(melody, len(form) * section_bars + pickup)
    first_of: dict[str, tuple[int, int]] = {}
    for letter, section in zip(form, ranges):
        if letter not in first_of:
            if any(section_similarity(similarity, other, section) >= SAME_MATERIAL for other in first_of.values()):
                return False
            first_of[letter] = section
            continue
        start = first_of[letter][1] - section_bars  # the first section's pickup bar is not repeated
        kept = section_bars - varied_bars
        if not all(similarity[start + i, section[0] + i] == 1.0 for i in range(kept)):
            return False
    return True


def _padded_similarity(melody: Melody, n_bars: int, similarity: np.ndarray | None = None) -> np.ndarray:
    """``bar_self_similarity`` (``similarity`` where given) over at least ``n_bars`` bars (bars past the
    melody's end are empty)."""
    similarity = bar_self_similarity(melody) if similarity is None else similarity
    if len(similarity) >= n_bars:
        return similarity
    padded = np.zeros((n_bars, n_bars))
    padded[: len(similarity), : len(similarity)] = similarity
    empty = np.arange(len(similarity), n_bars)
    padded[np.ix_(empty, empty)] = 1.0  # empty bars are alike
    return padded


def scale_degree(pitch: int, key: str) -> int | None:
    """1..7 for a pitch on its key's scale (the major or natural minor scale of the key's family),
    None for a note off the scale."""
    tonic, mode = parse_key(key)
    scale = MINOR_SCALE if mode_family(mode) == "minor" else MAJOR_SCALE
    interval = (pitch - tonic) % 12
    return scale.index(interval) + 1 if interval in scale else None


def last_note(melody: Melody, end_tick: int | None = None) -> Note | None:
    """The last note starting before ``end_tick`` (the melody's end when None)."""
    notes = [n for n in melody.notes if end_tick is None or n.onset < end_tick]
    return notes[-1] if notes else None


def notes_before(notes: Iterable[Note], tick: int) -> tuple[Note, ...]:
    """The ``notes`` starting before ``tick``, the last one ending there at the latest: a melody cut at
    a tick (a tune's closing beat, a loop's end or its bar lines)."""
    return tuple(n._replace(duration=min(n.duration, tick - n.onset)) for n in notes if n.onset < tick)


def section_slice(melody: Melody, start_bar: int, end_bar: int, to_bar: int) -> tuple[Note, ...]:
    """The notes starting in bars [start_bar, end_bar), moved to start at bar ``to_bar`` and cut at
    the slice's end: a section copied elsewhere in the tune."""
    bar = melody.bar_ticks
    start, end, shift = start_bar * bar, end_bar * bar, (to_bar - start_bar) * bar
    return tuple(Note(n.pitch, n.onset + shift, min(n.duration, end - n.onset))
                 for n in melody.notes if start <= n.onset < end)


STABLE_DEGREES = (1, 3, 5)  # the tonic triad: where a phrase can come to rest


def cadence_score(melody: Melody, end_tick: int, final: bool) -> int:
    """How well the phrase ending at ``end_tick`` comes to rest: 2 when its last note is the tonic
    (``final``: the tune's end, where it must also not follow a rest: ``rest_before``) or on the
    tonic triad (a section's end), plus 1 when that note is ``held``; 0 without a note."""
    note = last_note(melody, end_tick)
    if note is None:
        return 0
    degree = scale_degree(note.pitch, melody.key)
    rests = degree == 1 and rest_before(melody, note) is None if final else degree in STABLE_DEGREES
    return 2 * rests + held(note, melody)


def rest_before(melody: Melody, note: Note) -> int | None:
    """Where the last rest before ``note`` in its bar begins (None where the bar sounds up to it): notes
    after a rest at a tune's end (``z2 FF |]``) are an upbeat into a phrase that never comes, not an
    arrival (under 1 % of the corpus's tunes end so)."""
    bar_start = note.onset - note.onset % melody.bar_ticks
    sounding, rest = bar_start, None  # the bar is covered by notes up to ``sounding``
    for n in sorted(melody.notes, key=lambda n: n.onset):
        if n.onset >= note.onset:
            break
        if n.onset + n.duration > bar_start:
            rest = sounding if n.onset > sounding else rest
            sounding = max(sounding, n.onset + n.duration)
    return sounding if sounding < note.onset else rest


def held(note: Note, melody: Melody) -> bool:
    """Whether a phrase's last note is long enough to end it: half a beat or more (the corpus's tunes
    end so: from 88 % of the Irish ones, many on a quarter in 6/8, to all chorales)."""
    return 2 * note.duration >= beat_ticks(melody.time_signature)


def close_on_tonic(melody: Melody) -> Melody:
    """``melody`` ending on a held tonic: unless its last note is already the tonic, ``held`` and after
    no rest in its bar (``rest_before``), its last beat, or all from that rest on, becomes one tonic
    note, the one nearest the note before it. The last resort of a tune that should end at home when
    no sampled ending did."""
    if not melody.notes:
        return melody
    tonic, _ = parse_key(melody.key)
    last, beat, end = melody.notes[-1], beat_ticks(melody.time_signature), melody.end
    rest = rest_before(melody, last)
    if (last.pitch - tonic) % 12 == 0 and (held(last, melody) or last.duration >= end) and rest is None:
        return melody
    cut = max(min(end - beat, end if rest is None else rest), 0)
    kept = notes_before(melody.notes, cut)
    before = kept[-1].pitch if kept else last.pitch
    up = (tonic - before) % 12
    pitch = before + up if up <= 6 else before + up - 12  # the nearest tonic, down on a tritone's tie
    pitch = pitch + 12 if pitch < 0 else pitch - 12 if pitch > 127 else pitch
    return replace(melody, notes=(*kept, Note(pitch, cut, end - cut)))
