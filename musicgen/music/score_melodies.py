"""Parsed music21 scores to :class:`Melody` objects: the conversion behind the notation readers.

It lives apart from :mod:`musicgen.music.notation`, which reads files and has music21 parse them;
here what music21 parsed becomes melodies, so nothing downstream sees a music21 object.
:func:`pick_melody` gives the melodic part (the rule of :func:`musicgen.music.midi.pick_melody_track`);
:func:`score_parts` gives every part as a named Melody on one shared time axis (multi-track MIDI
of chorales, one file per voice of polyphony).

Conversion rules: ties are merged (a tie joins only equal, adjacent pitches),
chords keep their top note, grace notes and zero-length events are dropped,
offsets come from the flattened part in quarter lengths. Meter is the first
time signature (4/4 if none), tempo the first metronome mark (120 if none). The
key is the first Key object (modal keys map to the nearest of major/minor on
the same final: dorian, phrygian, aeolian and locrian count as minor) or a
Humdrum key tandem such as ``*G:mix``; a bare key signature decides between its
major and its relative minor from the notes. Essen Folksong ABC names only the
tonic in ``K:`` (``K: G`` heads G-minor songs too): pass ``key_is_tonic=True``
and the mode is decided from the notes. An anacrusis (a first measure shorter
than a bar) is shifted so that the pickup ends on the next downbeat, i.e. its
first note lands at ``bar_ticks - pickup_ticks``.
Repeats, endings and da capos are written out first; the measures that start a section are kept
as the Melody's ``sections``. music21 is imported inside the functions; no torch or Ray.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from musicgen.music.formats import NOTATION_SUFFIXES
from musicgen.music.keys import MODE_ABBREVIATIONS, key_from_sharps, key_name, mode_family, parse_key
from musicgen.music.melody import TICKS_PER_BEAT, Melody, Note, bar_ticks, estimate_key, quantise, snap
from musicgen.music.midi import TrackNotes, UnusableInput, pick_melody_track

log = logging.getLogger(__name__)

_HUMDRUM_KEY = re.compile(r"^\*([A-Ga-g])([#n-]*):(\w*)$")
_NOTATION_FILE_NAME = re.compile(f"(?:{'|'.join(re.escape(s) for s in NOTATION_SUFFIXES)})$", re.I)


@dataclass
class _PartNotes:
    name: str
    pitches: np.ndarray
    onsets: np.ndarray  # quarter lengths from the start of the part
    durations: np.ndarray


@dataclass
class _ScoreInfo:
    parts: list[_PartNotes]
    time_signature: tuple[int, int]
    key: str | None  # None: decide from the notes (key_signature, if any, narrows it)
    key_signature: int | None
    tempo: float
    pickup_beats: float
    title: str | None
    sections: tuple[float, ...] = ()  # quarter lengths where a section of the form starts


def _pitch_and_tie(element) -> tuple[int | None, str | None]:
    """MIDI pitch (a chord's top note) and tie type of a note or chord."""
    from music21 import chord, harmony, note

    if isinstance(element, note.Note):
        return int(element.pitch.midi), (element.tie.type if element.tie else None)
    if isinstance(element, chord.Chord) and not isinstance(element, harmony.Harmony):
        members = list(element.notes)
        if not members:
            return None, None
        top = max(members, key=lambda n: n.pitch.midi)
        tie = top.tie or element.tie
        return int(top.pitch.midi), (tie.type if tie else None)
    return None, None  # unpitched, chord symbols, ...


def _part_notes(part, name: str) -> _PartNotes:
    """Notes of one part in quarter lengths, ties merged.

    Ties are merged here rather than with music21's ``stripTies``: a tie only
    joins a note to the next one of the same pitch that starts where it ends,
    so sloppy ABC ties between different pitches (``G3-A``, common in
    O'Neill's) keep both notes instead of swallowing the second.
    """
    flat = part.flatten()
    pitches: list[int] = []
    onsets: list[float] = []
    durations: list[float] = []
    pending: dict[int, int] = {}  # pitch -> index of a note whose tie is still open
    for element in flat.notes:
        if element.duration.isGrace:
            continue
        ql = float(element.duration.quarterLength)
        if ql <= 0:
            continue
        pitch, tie = _pitch_and_tie(element)
        if pitch is None or not 0 <= pitch <= 127:
            continue
        onset = float(element.getOffsetBySite(flat))
        if tie in ("stop", "continue") and pitch in pending:
            j = pending[pitch]
            if abs(onsets[j] + durations[j] - onset) < 1e-6:
                durations[j] += ql
                if tie == "stop":
                    del pending[pitch]
                continue
        pitches.append(pitch)
        onsets.append(onset)
        durations.append(ql)
        if tie in ("start", "continue"):
            pending[pitch] = len(pitches) - 1
    return _PartNotes(
        name,
        np.asarray(pitches, dtype=np.int64),
        np.asarray(onsets, dtype=np.float64),
        np.asarray(durations, dtype=np.float64),
    )


def _humdrum_key(tandem: str) -> str | None:
    match = _HUMDRUM_KEY.match(tandem)
    if not match:
        return None
    letter, accidental, mode = match.groups()
    tonic = parse_key(letter.upper() + accidental.replace("n", "").replace("-", "b"))[0]
    mode = mode.lower()[:3]  # *G:mix; with no mode, a lower-case letter is a minor key
    mode = mode_family(mode) if mode in MODE_ABBREVIATIONS else ("minor" if letter.islower() else "major")
    return key_name(tonic, mode)


@dataclass
class _Context:
    time_signature: object = None
    key: str | None = None
    key_signature: int | None = None
    tempo_mark: object = None


def _context(part) -> _Context:
    """First meter, key and tempo of a part, walking its measures in order.

    ``part.recurse()`` is used rather than ``part.flatten()``: music21's ABC
    import may share one TimeSignature object between two measures, and a
    flattened stream then only keeps its later position.
    """
    from music21 import key as m21key
    from music21 import meter, note, tempo
    from music21.chord import Chord

    ctx = _Context()
    seen_note = False
    for element in part.recurse():
        if isinstance(element, (note.Note, Chord)):
            seen_note = True
        elif isinstance(element, meter.TimeSignature):
            if ctx.time_signature is None:
                ctx.time_signature = element
        elif isinstance(element, tempo.MetronomeMark):
            if ctx.tempo_mark is None:
                ctx.tempo_mark = element
        elif ctx.key is None:
            # a Key object or Humdrum key tandem wins; a bare key signature is
            # the fallback; after the first note only a missing key is filled in
            if isinstance(element, m21key.Key):
                if not seen_note or ctx.key_signature is None:
                    tonic = parse_key(element.tonic.name)[0]
                    ctx.key = key_name(tonic, mode_family(element.mode))
            elif isinstance(element, m21key.KeySignature):
                if ctx.key_signature is None:
                    ctx.key_signature = int(element.sharps)
            elif not seen_note and type(element).__name__ == "MiscTandem":
                ctx.key = _humdrum_key(str(getattr(element, "tandem", "")))
        if seen_note and ctx.time_signature is not None and ctx.tempo_mark is not None and (
            ctx.key is not None or ctx.key_signature is not None
        ):
            break
    return ctx


def _pickup(part) -> float:
    """Quarter lengths missing from the first measure when it is an anacrusis."""
    from music21 import stream

    measures = part.getElementsByClass(stream.Measure)
    first = measures.first()
    if first is None or len(measures) < 2:
        return 0.0
    padding = float(first.paddingLeft or 0.0)
    if padding > 0:
        return padding
    try:
        bar = float(first.barDuration.quarterLength)
    except Exception:  # noqa: BLE001 - no time signature in context
        return 0.0
    length = float(first.duration.quarterLength)
    return bar - length if 0 < length < bar else 0.0


def _title(score) -> str | None:
    md = score.metadata
    if md is None:
        return None
    title = md.title
    if not title:
        movement = md.movementName
        if movement and not _NOTATION_FILE_NAME.search(str(movement)):
            title = movement
    parent = None
    try:
        parent = md.parentTitle
    except AttributeError:
        pass
    if parent and title and parent != title:
        return f"{parent}: {title}"
    return str(title or parent) if (title or parent) else None


_SECTION_BARLINES = {"double", "final", "heavy", "heavy-light", "light-heavy", "heavy-heavy"}


def _expand_repeats(score):
    """The score with its repeats, first and second endings and da capos written out, so an AABB
    tune keeps all four strains; a score whose repeat marks music21 cannot pair stays as written."""
    from music21 import bar, repeat, spanner

    marks = score.recurse().getElementsByClass((bar.Repeat, spanner.RepeatBracket, repeat.RepeatExpression))
    if marks.first() is None:
        return score
    try:
        return score.expandRepeats()
    except Exception as exc:  # noqa: BLE001 - music21's Expander raises several kinds on odd marks
        log.info("repeats left as written: %s", exc)
        return score


def _section_starts(part) -> tuple[float, ...]:
    """Offsets (quarter lengths) of the measures that start a section: where the measure numbers go
    back (an expanded repeat starting again) and at double, final or repeat bar lines. A second
    ending, where the numbers skip forward, does not start one."""
    from music21 import bar, stream

    def boundary(barline) -> bool:
        return barline is not None and (isinstance(barline, bar.Repeat) or barline.type in _SECTION_BARLINES)

    starts = [0.0]
    previous = None
    for measure in part.getElementsByClass(stream.Measure):
        if previous is not None and (
            measure.number <= previous.number or boundary(measure.leftBarline) or boundary(previous.rightBarline)
        ):
            starts.append(float(measure.offset))
        previous = measure
    return tuple(starts)


def _score_info(score) -> _ScoreInfo:
    from music21 import stream

    score = _expand_repeats(score)
    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    if not parts:
        raise UnusableInput("no_notes", "the score has no parts")
    extracted = []
    for i, part in enumerate(parts):
        name = part.partName or (part.id if isinstance(part.id, str) else None) or f"part {i + 1}"
        extracted.append(_part_notes(part, str(name)))
    ctx = _context(parts[0])
    ts = ctx.time_signature
    time_signature = (4, 4)
    if ts is not None:
        try:
            time_signature = (int(ts.numerator), int(ts.denominator))
        except (TypeError, ValueError):
            pass
        if time_signature[0] <= 0 or time_signature[1] <= 0 or bar_ticks(time_signature) <= 0:
            time_signature = (4, 4)
    key, sharps = ctx.key, (None if ctx.key is not None else ctx.key_signature)
    mark = ctx.tempo_mark
    tempo = 120.0
    if mark is not None:
        try:
            bpm = mark.getQuarterBPM()
            if bpm and bpm > 0:
                tempo = round(float(bpm), 2)
        except Exception:  # noqa: BLE001 - marks without a number
            pass
    return _ScoreInfo(extracted, time_signature, key, sharps, tempo, _pickup(parts[0]), _title(score),
                      _section_starts(parts[0]))


def _mode_from_thirds(tonic: int, parts: Sequence[_PartNotes]) -> str:
    """'minor' when the minor third above the tonic sounds longer than the major third."""
    minor = major = 0.0
    for part in parts:
        interval = (part.pitches - tonic) % 12
        minor += float(part.durations[interval == 3].sum())
        major += float(part.durations[interval == 4].sum())
    return "minor" if minor > major else "major"


def _decide_key(info: _ScoreInfo, parts: Sequence[_PartNotes], key_is_tonic: bool = False) -> str | None:
    if info.key is not None:
        if key_is_tonic:
            tonic = parse_key(info.key)[0]
            return key_name(tonic, _mode_from_thirds(tonic, parts))
        return info.key
    pitches = np.concatenate([p.pitches for p in parts]) if parts else np.zeros(0, np.int64)
    if info.key_signature is None or pitches.size == 0:
        return None  # quantise estimates
    durations = np.concatenate([p.durations for p in parts])
    major, minor = key_from_sharps(info.key_signature, False), key_from_sharps(info.key_signature, True)
    estimate = estimate_key(pitches, durations)
    if estimate in (major, minor):
        return estimate
    # the key signature is trusted: a minor piece usually ends on its tonic
    last = parts[0].pitches[np.argmax(parts[0].onsets)] if parts[0].pitches.size else pitches[-1]
    return minor if int(last) % 12 == parse_key(minor)[0] else major


def _melody(info: _ScoreInfo, part: _PartNotes, key: str | None, meta: dict) -> Melody:
    try:
        return quantise(
            part.pitches,
            part.onsets,
            part.durations,
            time_signature=info.time_signature,
            key=key,
            tempo=info.tempo,
            pickup_beats=info.pickup_beats,
            meta=meta,
            sections=info.sections,
        )
    except ValueError as exc:
        raise UnusableInput("no_notes", f"part {part.name!r}: {exc}") from exc


def _dropped_ticks(info: _ScoreInfo, part: _PartNotes) -> int:
    """Whole bars of leading silence that quantise removes from this part."""
    first = int(snap(np.array([(part.onsets.min() + info.pickup_beats) * TICKS_PER_BEAT]))[0])
    bar = bar_ticks(info.time_signature)
    return (first // bar) * bar


def _base_meta(info: _ScoreInfo, meta: dict | None) -> dict:
    out = dict(meta or {})
    if info.title and "title" not in out:
        out["title"] = info.title
    return out


def score_parts(score, meta: dict | None = None) -> list[tuple[str, Melody]]:
    """Every part of a music21 score (or a lone Part) as ``(part name, Melody)``.

    Parts without notes are skipped. All melodies share meter, key, tempo and
    the anacrusis shift, and stay aligned with each other: leading empty bars
    are only dropped where every part has them. Each Melody's ``meta`` holds
    ``meta``, the score's ``title`` when it has one, and ``track`` (the part name).
    """
    info = _score_info(score)
    parts = [p for p in info.parts if p.pitches.size]
    if not parts:
        return []
    key = _decide_key(info, parts)
    base = _base_meta(info, meta)
    drops = [_dropped_ticks(info, p) for p in parts]
    common = min(drops)
    out = []
    for part, drop in zip(parts, drops):
        melody = _melody(info, part, key, {**base, "track": part.name})
        if drop > common:
            shift = drop - common
            melody = replace(
                melody,
                notes=tuple(Note(n.pitch, n.onset + shift, n.duration) for n in melody.notes),
                sections=tuple(t + shift for t in melody.sections),
            )
        out.append((part.name, melody))
    return out


def pick_melody(score, meta: dict | None, key_is_tonic: bool = False) -> Melody:
    info = _score_info(score)
    parts = [p for p in info.parts if p.pitches.size]
    if not parts:
        raise UnusableInput("no_notes", "the score holds no pitched notes")
    tracks = [TrackNotes(p.name, 0, False, p.pitches, p.onsets, p.durations) for p in parts]
    chosen = pick_melody_track(tracks)
    part = parts[[id(t) for t in tracks].index(id(chosen))]
    key = _decide_key(info, parts, key_is_tonic)
    return _melody(info, part, key, {**_base_meta(info, meta), "track": part.name})
