"""ABC in and out: the canonical ABC text of a :class:`Melody`, and a lenient reader of it.

The ABC tokenizer (:mod:`musicgen.tokenizers.abc`, one token per character) and the ``.abc``
files people open are both this text, so the same melody always gives the same characters
and reading it back is exact:

* headers ``M:n/d``, ``L:1/8`` and ``K:<key>`` (``K:Bb``, ``K:F#m``);
* notes spelled in the key (sharps in sharp keys and C, flats in flat keys for
  notes outside the scale), accidentals written only where the key signature
  or an earlier accidental on the same letter and octave in the bar would give
  another pitch;
* lengths in eighths (6 ticks): ``A`` 6, ``A2`` 12, ``A/2`` 3, ``A3/2`` 9,
  ``A2/3`` 4 (a triplet eighth), ``A/6`` 1;
* gaps as rests ``z``, a pickup as a leading rest, a space at each beam-group
  start, `` | `` at every bar line, notes crossing one split and tied (``A2- | A2``),
  the continuation re-stating its accidental;
* four bars to a line, ending `` |`` and finally `` |]``; no trailing rest.

``to_abc`` adds ``X:``, ``T:``, ``Q:`` and ``%%propagate-accidentals octave`` so
other ABC 2.1 readers read the same pitches (the tests check music21).

The reader (:func:`from_abc_text`) reads that back exactly and skips what it does not understand,
so text sampled from a model always decodes to some melody. See docs/tokens.md. Key facts
(signatures, spelling, modes) come from :mod:`musicgen.music.keys`.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from musicgen.music.form import pickup_bars
from musicgen.music.keys import (
    ACCIDENTAL_ALTERATION,
    LETTER_FIFTHS,
    NATURAL_PC,
    key_name,
    key_signature,
    key_spelling,
    mode_family,
    mode_fifths,
    parse_key,
    pitch_spelling,
)
from musicgen.music.melody import TICKS_PER_BEAT, Melody, Note, bar_ticks

UNIT = TICKS_PER_BEAT // 2  # ticks in the L:1/8 length unit
WHOLE = 4 * TICKS_PER_BEAT  # ticks in a whole note; ABC lengths are fractions of it
BARS_PER_LINE = 4
DENOMINATORS = (1, 2, 4, 8, 16)
PROPAGATION_DIRECTIVE = "%%propagate-accidentals octave"

# K: writes no mode for major and "m" for minor; other modes by (at least) their first three letters
_KEY_MODE_NAMES = {"": "major", "m": "minor"}
_ACCIDENTAL_TEXT = {1: "^", -1: "_", 0: "="}
_ACCIDENTAL_VALUE = {"^^": 2, "^": 1, "__": -2, "_": -1, "=": 0}

_FIELD_RE = re.compile(r"([A-Za-z]):(.*)")
_INLINE_FIELD_RE = re.compile(r"\[([A-Za-z]):([^\]\n]*)\]")
_NOTE_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)(\d{0,4})((?:/\d{0,4})*)")
_REST_RE = re.compile(r"([zxZ])(\d{0,4})((?:/\d{0,4})*)")
_FRACTION_RE = re.compile(r"\s*(\d{1,4})\s*/\s*(\d{1,4})")
_KEY_RE = re.compile(r"\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_TEMPO_RE = re.compile(r"\s*(?:\"[^\"]*\"\s*)?(?:(\d{1,3})/(\d{1,3})\s*=\s*)?(\d{1,4})")
_SKIP_PAIRS = {'"': '"', "!": "!", "{": "}"}  # chord symbols, decorations, grace notes


def abc_key(key: str) -> tuple[str, int]:
    """'F# minor' -> ('F#m', 3): the K: field of a key and its number of sharps
    (the tonic spelled as :func:`musicgen.music.keys.key_spelling` spells it)."""
    tonic, fifths = key_spelling(key)
    return tonic + ("m" if parse_key(key)[1] == "minor" else ""), fifths


def abc_length(ticks: int) -> str:
    """Length suffix of ``ticks`` in L:1/8 units: 6 -> '', 12 -> '2', 3 -> '/2', 4 -> '2/3'."""
    f = Fraction(ticks, UNIT)
    text = "" if f.numerator == 1 else str(f.numerator)
    return text if f.denominator == 1 else f"{text}/{f.denominator}"


def _pitch_text(letter: str, octave: int) -> str:
    """Letter and octave marks; octave 0 is the one starting at middle C (MIDI 60)."""
    if octave >= 1:
        return letter.lower() + "'" * (octave - 1)
    return letter + "," * -octave


def _beam_ticks(time_signature: tuple[int, int]) -> int:
    """Beam-group length: a dotted beat in compound eighth/sixteenth meters, else a quarter."""
    n, d = time_signature
    return 3 * WHOLE // d if d >= 8 and n % 3 == 0 else TICKS_PER_BEAT


def _parse_length(digits: str, slashes: str) -> Fraction | None:
    """ABC length multiplier: '3' '/2' '3/2' '/' (a half) '//' (a quarter); None if zero."""
    num = int(digits) if digits else 1
    den = 1
    for part in re.findall(r"/(\d*)", slashes):
        den *= int(part) if part else 2
    return Fraction(num, den) if num and den else None


def _bars(melody: Melody) -> tuple[list[str], list[str]]:
    """The M:, L:, K: lines and the text of every bar."""
    n, d = melody.time_signature
    if n < 1 or d not in DENOMINATORS:
        raise ValueError(f"time signature {n}/{d} is not supported")
    bar = melody.bar_ticks
    tonic, fifths = abc_key(melody.key)
    sig, spelling = key_signature(fifths), pitch_spelling(melody.key)
    beam = _beam_ticks(melody.time_signature)

    # notes and the rests between them, then cut at bar lines
    segments: list[tuple[int | None, int, int]] = []
    cursor = 0
    for note in melody.notes:
        if note.onset < cursor:
            raise ValueError("notes overlap: ABC rendering needs a monophonic melody in time order")
        if note.duration <= 0 or not 0 <= note.pitch <= 127:
            raise ValueError(f"invalid note {note}")
        if note.onset > cursor:
            segments.append((None, cursor, note.onset - cursor))
        segments.append((note.pitch, note.onset, note.duration))
        cursor = note.onset + note.duration
    bars: list[list[tuple[int | None, int, int, bool]]] = [[] for _ in range(math.ceil(cursor / bar))]
    for pitch, start, length in segments:
        while length:
            piece = min(length, bar - start % bar)
            length -= piece
            bars[start // bar].append((pitch, start, piece, pitch is not None and length > 0))
            start += piece

    bar_texts = []
    for items in bars:
        accidentals: dict[tuple[str, int], int] = {}
        parts = []
        for pitch, start, length, tied in items:
            if parts and start % bar % beam == 0:
                parts.append(" ")
            if pitch is None:
                parts.append("z" + abc_length(length))
                continue
            letter, alteration = spelling[pitch % 12]
            octave = (pitch - alteration - NATURAL_PC[letter]) // 12 - 5
            if accidentals.get((letter, octave), sig[letter]) != alteration:
                parts.append(_ACCIDENTAL_TEXT[alteration])
                accidentals[letter, octave] = alteration
            parts += [_pitch_text(letter, octave), abc_length(length), "-" if tied else ""]
        bar_texts.append("".join(parts))

    return [f"M:{n}/{d}", "L:1/8", f"K:{tonic}"], bar_texts


def render(melody: Melody) -> str:
    """Canonical ABC of the melody: M:, L:, K: lines, then the bars."""
    header, bar_texts = _bars(melody)
    return "\n".join([*header, *_lines("", [(text, "|") for text in bar_texts])])


def _lines(start: str, bars: list[tuple[str, str]]) -> list[str]:
    """Bars (text, the bar line after it) ``BARS_PER_LINE`` to a line; the last bar line closes the tune."""
    if not bars:
        return ["|]"]
    if bars[-1][1] == "|":
        bars = [*bars[:-1], (bars[-1][0], "|]")]
    return [(start + " " if i == 0 and start else "") + " ".join(f"{text} {line}" for text, line in
                                                                  bars[i : i + BARS_PER_LINE])
            for i in range(0, len(bars), BARS_PER_LINE)]


def _with_repeats(bar_texts: list[str], melody: Melody) -> tuple[str, list[tuple[str, str]]]:
    """The bars of a tune with a form (``Melody.meta["form"]`` and its ``sections``), a section that
    comes again right away written once between repeat signs, with first and second endings where
    only its last bars differ, and a pickup bar ahead of them; (the opening bar line, [(bar text, bar
    line after it)])."""
    form, starts = melody.meta.get("form"), [round(t / melody.bar_ticks) for t in melody.sections]
    if not form or len(starts) != len(form) or starts[0] != 0:
        return "", [(text, "|") for text in bar_texts]
    ranges = list(zip(starts, [*starts[1:], len(bar_texts)]))
    start, out, i = "", [], 0
    section_bars = ranges[0][1] - 1  # where the first section is a pickup bar and whole sections like the rest
    if section_bars and pickup_bars(melody, section_bars) and {b - a for a, b in ranges[1:]} == {section_bars}:
        out.append((bar_texts[0], "|"))  # a pickup bar ahead of whole sections: before the first repeat sign
        ranges[0] = (1, ranges[0][1])

    def open_repeat() -> None:
        nonlocal start
        if not out:
            start = "|:"
        else:
            out[-1] = (out[-1][0], ":||:" if out[-1][1] == ":|" else "|:")

    while i < len(ranges):
        (a, b), again = ranges[i], i + 1 < len(ranges) and form[i + 1] == form[i]
        first, second = bar_texts[a:b], bar_texts[ranges[i + 1][0] : ranges[i + 1][1]] if again else []
        common = next((k for k, (x, y) in enumerate(zip(first, second)) if x != y), len(first))
        if not again or len(second) != len(first) or common == 0:
            out += [(text, "|") for text in first]
            i += 1
            continue
        open_repeat()
        out += [(text, "|") for text in first[:common]]
        if common == len(first):  # an exact repeat
            out[-1] = (out[-1][0], ":|")
        else:  # first and second endings
            out[-1] = (out[-1][0], "|1")
            out += [(text, "|") for text in first[common:]]
            out[-1] = (out[-1][0], ":|2")
            out += [(text, "|") for text in second[common:]]
        i += 2
    return start, out

def to_abc(melody: Melody, title: str | None = None) -> str:
    """A complete ABC 2.1 tune (X:, T:, Q: and the canonical text) for people and other tools.

    The directive pins down the accidental rule the text is written under
    (an accidental holds for its letter and octave to the end of the bar):
    ABC 2.1 readers otherwise default to all octaves, older ones to none.
    """
    title = " ".join(str(title or melody.meta.get("title") or "Untitled").split())
    tempo = f"Q:1/4={round(melody.tempo)}\n" if melody.tempo else ""
    header, bar_texts = _bars(melody)
    body = "\n".join([*header, *_lines(*_with_repeats(bar_texts, melody))])
    return f"%abc-2.1\nX:1\nT:{title}\n{PROPAGATION_DIRECTIVE}\n{tempo}{body}\n"


def from_abc_text(text: str) -> Melody:
    """Parse the first tune of ABC text; unknown symbols are skipped, never fatal."""
    return _AbcReader().read(text)


class _AbcReader:
    """A small ABC parser for one monophonic tune: enough for canonical text, lenient otherwise."""

    def __init__(self) -> None:
        self.time_signature = (4, 4)
        self.unit: Fraction | None = None  # ticks per L: unit, once known
        self.key = "C major"
        self.sig = key_signature(0)
        self.tempo = 120.0
        self.title: str | None = None
        self.notes: list[Note] = []
        self.cursor = 0
        self.accidentals: dict[tuple[str, int | None], int] = {}
        self.propagation = "octave"  # how far an accidental holds in its bar (%%propagate-accidentals)
        self.open_note = False  # the last element was a note ending at the cursor
        self.tie = False
        self.started = False

    def read(self, text: str) -> Melody:
        for line in text.splitlines():
            if line.startswith("%%propagate-accidentals"):
                value = line.split()[1:] or ["octave"]
                self.propagation = value[0] if value[0] in ("not", "octave", "pitch") else "octave"
                continue
            field = _FIELD_RE.match(line)
            if field:
                if field.group(1) == "X" and self.started:
                    break  # the next tune
                self.field(field.group(1), field.group(2))
            else:
                self.body(line)
        meta = {"title": self.title} if self.title else {}
        return Melody(tuple(self.notes), self.time_signature, self.key, self.tempo, meta)

    def field(self, name: str, value: str) -> None:
        if name == "M":
            v = value.strip()
            if v in ("C", "C|"):
                self.time_signature = (4, 4) if v == "C" else (2, 2)
            elif (m := _FRACTION_RE.match(v)) and 1 <= int(m[1]) <= 99 and int(m[2]) in DENOMINATORS:
                self.time_signature = (int(m[1]), int(m[2]))
        elif name == "L":
            if (m := _FRACTION_RE.match(value)) and int(m[1]) and int(m[2]):
                self.unit = Fraction(WHOLE * int(m[1]), int(m[2]))
        elif name == "K":
            self.set_key(value)
        elif name == "Q":
            if m := _TEMPO_RE.match(value):
                beat = Fraction(int(m[1]), int(m[2]) or 1) if m[1] else (self.unit or UNIT) / WHOLE
                self.tempo = float(int(m[3]) * beat * 4) or self.tempo
        elif name == "T" and self.title is None:
            self.title = value.strip()

    def set_key(self, value: str) -> None:
        m = _KEY_RE.match(value)
        if not m:
            self.key, self.sig = "C major", key_signature(0)
            return
        letter, acc, mode = m[1].upper(), m[2], m[3].lower()
        mode = _KEY_MODE_NAMES.get(mode, mode[:3])
        self.key = key_name(*parse_key(f"{letter}{acc} {mode_family(mode)}"))
        self.sig = key_signature(LETTER_FIFTHS[letter] + 7 * ACCIDENTAL_ALTERATION[acc] + mode_fifths(mode))

    def length(self, digits: str, slashes: str) -> int:
        if self.unit is None:  # ABC's default unit: 1/16 for meters below 3/4, else 1/8
            n, d = self.time_signature
            self.unit = Fraction(WHOLE, 16 if n / d < 0.75 else 8)
        factor = _parse_length(digits, slashes)
        return round(self.unit * factor) if factor else 0

    def body(self, line: str) -> None:
        i = 0
        while i < len(line):
            c = line[i]
            if c == "%":
                return
            if c in "^_=ABCDEFGabcdefg" and (m := _NOTE_RE.match(line, i)):
                self.note(m)
                i = m.end()
            elif c in "zxZ" and (m := _REST_RE.match(line, i)):
                self.started = True
                if c == "Z":  # whole bars of rest
                    self.cursor += (int(m[2]) if m[2] else 1) * bar_ticks(self.time_signature)
                else:
                    self.cursor += self.length(m[2], m[3])
                self.open_note = self.tie = False
                i = m.end()
            elif c == "|":
                self.accidentals.clear()
                i += 1
            elif c == "-":
                self.tie = self.open_note
                i += 1
            elif c == "[" and (m := _INLINE_FIELD_RE.match(line, i)):
                self.field(m[1], m[2])
                i = m.end()
            elif c in _SKIP_PAIRS and (j := line.find(_SKIP_PAIRS[c], i + 1)) >= 0:
                i = j + 1
            else:
                i += 1  # spaces, stray characters, repeats, tuplet marks...

    def note(self, m: re.Match) -> None:
        self.started = True
        letter = m[2].upper()
        octave = (1 if m[2].islower() else 0) + m[3].count("'") - m[3].count(",")
        held = (letter, octave if self.propagation == "octave" else None)
        if m[1]:
            alteration = _ACCIDENTAL_VALUE[m[1]]
            if self.propagation != "not":
                self.accidentals[held] = alteration
        else:
            alteration = self.accidentals.get(held, self.sig[letter])
        pitch = 12 * (octave + 5) + NATURAL_PC[letter] + alteration
        ticks = self.length(m[4], m[5])
        tie, self.tie, self.open_note = self.tie, False, False
        if ticks <= 0:
            return
        if not 0 <= pitch <= 127:
            self.cursor += ticks  # out of MIDI range: keep the time, drop the note
            return
        last = self.notes[-1] if self.notes else None
        if tie and last and last.pitch == pitch and last.onset + last.duration == self.cursor:
            self.notes[-1] = Note(pitch, last.onset, last.duration + ticks)
        else:
            self.notes.append(Note(pitch, self.cursor, ticks))
        self.cursor += ticks
        self.open_note = True
