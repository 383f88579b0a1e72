"""ABC / MusicXML / Humdrum readers (musicgen.music.notation) and score conversion (musicgen.music.score_melodies)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

music21 = pytest.importorskip("music21")

from musicgen.music.abc_tunes import abc_tune_number, split_abc_tunes  # noqa: E402
from musicgen.music.melody import TICKS_PER_BEAT  # noqa: E402
from musicgen.music.midi import UnusableInput, read_midi, write_midi  # noqa: E402
from musicgen.music.notation import parse_score, read_abc_tune, read_notation  # noqa: E402
from musicgen.music.score_melodies import score_parts  # noqa: E402

CORPUS = os.path.join(os.path.dirname(music21.__file__), "corpus")

THREE_TUNES = """%abc-2.1
% a file header: these defaults hold for every tune
L:1/8
This line is free text and is not carried.

X:1
T:First
M:4/4
K:C
CDEF GABc|

X:2
T:Second
M:3/4
K:G
GAB c2d|

X: 3
T:Third
M:6/8
K:D
DEF GAB|
"""


def test_split_abc_tunes_carries_the_header():
    tunes = split_abc_tunes(THREE_TUNES)
    assert len(tunes) == 3
    assert [abc_tune_number(t) for t in tunes] == [1, 2, 3]
    for tune, title in zip(tunes, ["First", "Second", "Third"]):
        assert tune.startswith("X:")
        assert "L:1/8" in tune and f"T:{title}" in tune
        assert "free text" not in tune
    assert "T:First" not in tunes[1] and "T:Third" not in tunes[1]
    # the header applies: L:1/8 makes C an eighth note
    melodies = read_notation(THREE_TUNES.encode(), ".abc")
    assert [m.meta["title"] for m in melodies] == ["First", "Second", "Third"]
    assert [m.meta["x"] for m in melodies] == [1, 2, 3]
    assert melodies[0].notes[0].duration == TICKS_PER_BEAT // 2
    assert [n.pitch for n in melodies[0].notes] == [60, 62, 64, 65, 67, 69, 71, 72]


def test_split_abc_without_x_line():
    assert split_abc_tunes("") == []
    (tune,) = split_abc_tunes("T:t\nK:C\nCDE|\n")
    # no X:, no L: and no M:: the ABC default unit length 1/8 applies
    (melody,) = read_notation(tune.encode(), ".abc")
    assert [n.duration for n in melody.notes] == [TICKS_PER_BEAT // 2] * 3


def test_abc_pickup_lands_on_the_upbeat():
    abc = "X:7\nT:Pickup\nM:3/4\nL:1/4\nK:G\nD | G2 A | B3 | A2 G | G3 |]\n"
    (melody,) = read_notation(abc.encode(), ".abc")
    bar = melody.bar_ticks
    assert bar == 3 * TICKS_PER_BEAT
    pickup_ticks = TICKS_PER_BEAT  # one quarter
    assert melody.notes[0].onset == bar - pickup_ticks
    assert melody.notes[1].onset == bar  # G on the first downbeat
    assert [n.pitch for n in melody.notes[:3]] == [62, 67, 69]
    assert melody.key == "G major" and melody.time_signature == (3, 4)
    assert melody.meta == {"x": 7, "title": "Pickup", "track": melody.meta["track"]}


def test_abc_modal_key_and_ties():
    abc = "X:1\nT:Modal\nM:4/4\nL:1/4\nK:Ador\nA B c d- | d e A2 |]\n"
    (melody,) = read_notation(abc.encode(), ".abc")
    assert melody.key == "A minor"  # dorian counts as minor
    assert [n.pitch for n in melody.notes] == [69, 71, 72, 74, 76, 69]
    assert melody.notes[3].duration == 2 * TICKS_PER_BEAT  # d- | d merged


def test_abc_tie_between_different_pitches_keeps_both_notes():
    abc = "X:1\nT:Sloppy\nM:2/4\nL:1/8\nK:C\nC2-D2 | E4 |]\n"
    (melody,) = read_notation(abc.encode(), ".abc")
    assert [n.pitch for n in melody.notes] == [60, 62, 64]


def test_failed_tune_is_skipped_and_reported():
    text = THREE_TUNES.replace("GAB c2d|", "")  # tune 2 has no notes
    errors: list = []
    melodies = read_notation(text.encode(), ".abc", errors=errors)
    assert [m.meta["x"] for m in melodies] == [1, 3]
    assert len(errors) == 1 and isinstance(errors[0], UnusableInput) and errors[0].x == 2
    with pytest.raises(UnusableInput):
        read_notation(b"X:1\nT:empty\nK:C\n", ".abc")


def _two_part_score(soprano_pitches, bass_pitches, ks=None):
    from music21 import key, meter, note, stream

    score = stream.Score()
    for name, pitches in (("Soprano", soprano_pitches), ("Bass", bass_pitches)):
        part = stream.Part()
        part.partName = name
        part.append(meter.TimeSignature("4/4"))
        if ks is not None:
            part.append(key.KeySignature(ks))
        for p in pitches:
            part.append(note.Note(p, quarterLength=1.0) if p is not None else note.Rest(quarterLength=1.0))
        measured = part.makeMeasures()
        measured.partName = name
        score.insert(0, measured)
    return score


def _musicxml_bytes(score) -> bytes:
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(score).parse()


def test_musicxml_round_trip_picks_the_soprano():
    soprano = [72, 74, 76, 77, 79, 77, 76, 74, 72]
    bass = [48, 43, 48, 41, 43, 43, 48, 43, 36]
    data = _musicxml_bytes(_two_part_score(soprano, bass))
    (melody,) = read_notation(data, ".musicxml")
    assert [n.pitch for n in melody.notes] == soprano
    assert melody.meta["track"] == "Soprano"
    assert [n.onset for n in melody.notes] == [i * TICKS_PER_BEAT for i in range(9)]

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container><rootfiles>'
            '<rootfile full-path="score.xml"/></rootfiles></container>',
        )
        archive.writestr("score.xml", data)
    (zipped,) = read_notation(buffer.getvalue(), "mxl")
    assert zipped.notes == melody.notes


def test_key_signature_alone_chooses_major_or_relative_minor():
    # one sharp, an E-minor tune that ends on E
    e_minor = [64, 66, 67, 71, 72, 71, 67, 66, 63, 64, 64, 64]
    (melody,) = read_notation(_musicxml_bytes(_two_part_score(e_minor, [40] * 12, ks=1)), ".xml")
    assert melody.key == "E minor"
    g_major = [67, 71, 74, 72, 71, 69, 67, 66, 67, 74, 71, 67]
    (melody,) = read_notation(_musicxml_bytes(_two_part_score(g_major, [43] * 12, ks=1)), ".xml")
    assert melody.key == "G major"


def test_score_parts_keeps_voices_aligned():
    soprano = [72, 74, 76, 77, 79, 77, 76, 74]
    bass = [None, None, None, None, 48, 43, 48, 41]  # enters in bar two
    parts = dict(score_parts(_two_part_score(soprano, bass)))
    assert set(parts) == {"Soprano", "Bass"}
    assert parts["Soprano"].notes[0].onset == 0
    assert parts["Bass"].notes[0].onset == 4 * TICKS_PER_BEAT


KERN = """!!!OTL: Tiny chorale
**kern\t**kern
*Ibass\t*Icant
*M4/4\t*M4/4
*k[f#]\t*k[f#]
*G:\t*G:
=1\t=1
2G\t4d
.\t4e
2B\t[2f#
=2\t=2
1G\t2f#]
.\t2g
==\t==
*-\t*-
"""


def test_kern_round_trip():
    (melody,) = read_notation(KERN.encode(), ".krn")
    assert [n.pitch for n in melody.notes] == [62, 64, 66, 67]
    assert [n.duration for n in melody.notes] == [12, 12, 48, 24]
    assert melody.key == "G major" and melody.time_signature == (4, 4)
    assert melody.meta["title"] == "Tiny chorale"


@pytest.mark.parametrize(
    "data, suffix",
    [
        (b"this is not humdrum at all", ".krn"),
        (b"**kern\n\xff\xfe garbage tokens ##\n*-\n", ".krn"),
        (b"<score-partwise><part id='P1'><measure>", ".xml"),
        (b"\x00\x01 not xml", ".musicxml"),
        (b"PK\x03\x04 broken zip", ".mxl"),
        (b"X:1\nT:x\nK:C\nCDE|\n", ".pdf"),
    ],
)
def test_garbage_raises_unusable_input(data, suffix):
    with pytest.raises(UnusableInput):
        read_notation(data, suffix)


def _corpus_bytes(relative: str) -> bytes:
    with open(os.path.join(CORPUS, relative), "rb") as fh:
        return fh.read()


def test_bach_chorale_melody_is_the_soprano():
    data = _corpus_bytes("bach/bwv269.mxl")
    (melody,) = read_notation(data, ".mxl")
    assert melody.meta["track"] == "Soprano"
    score = parse_score(data, ".mxl")
    soprano = next(p for p in score.expandRepeats().parts if p.partName == "Soprano")
    expected = [n.pitch.midi for n in soprano.flatten().stripTies().notes]
    assert [n.pitch for n in melody.notes] == expected  # the chorale's repeated first strain written out
    assert len(melody.notes) > len(next(p for p in score.parts if p.partName == "Soprano").flatten().stripTies().notes)
    assert melody.key == "G major" and melody.time_signature == (3, 4)
    assert melody.notes[0].onset == melody.bar_ticks - TICKS_PER_BEAT  # one-beat pickup
    names = [name for name, _ in score_parts(score)]
    assert names == ["Soprano", "Alto", "Tenor", "Bass"]


def test_palestrina_voices():
    data = _corpus_bytes("palestrina/Agnus_01.krn")
    (melody,) = read_notation(data, ".krn")
    assert melody.time_signature == (4, 2)
    assert melody.key == "G major"  # *G:mix, mixolydian counts as major
    assert "Agnus" in melody.meta["title"]
    assert len(melody.notes) > 50 and 55 <= min(n.pitch for n in melody.notes)
    parts = score_parts(parse_score(data, ".krn"))
    assert len(parts) == 5
    assert len({m.n_bars for _, m in parts}) == 1  # voices share the time axis
    assert max(len(m.notes) for _, m in parts) > 60


def test_essen_key_names_the_tonic_only():
    # Essen ABC writes K: G above a G-minor song and spells the flats out
    abc = b"X:106\nT:Essen\nM:4/4\nL:1/8\nK: G\nD2 | G2_B2A2d2 | c2_B2A2G2 | _B2A2G4 |]\n"
    (as_written,) = read_notation(abc, ".abc")
    (tonic_only,) = read_notation(abc, ".abc", key_is_tonic=True)
    assert as_written.key == "G major"
    assert tonic_only.key == "G minor"
    major = b"X:1\nT:Essen\nM:4/4\nL:1/8\nK: G\nG2B2A2d2 | B4G4 |]\n"
    assert read_notation(major, ".abc", key_is_tonic=True)[0].key == "G major"


REPEATED_TUNE = """X:1
T:Repeats and endings
M:4/4
L:1/8
K:G
|:GABc dedc|BAGF G4:|
|:efga gfed|1 cBAG G4:|2 cBAG E4|]
"""

PICKUP_TUNE = """X:2
T:Pickup and endings
M:6/8
L:1/8
K:D
A|:d2f afd|e2g gfe|d2f afd|1 ecA A2A:|2 ecA d2||
|:fga agf|gfe e2g|fga agf|1 edc d3:|2 edc d2|]
"""


def test_abc_repeats_and_endings_are_written_out():
    melody = read_abc_tune(REPEATED_TUNE)
    letters = [n.pitch for n in melody.notes]
    a_part = [67, 69, 71, 72, 74, 76, 74, 72, 71, 69, 67, 66, 67]
    assert letters[:13] == a_part and letters[13:26] == a_part  # A played twice
    b_first, b_second = letters[26:39], letters[39:52]
    assert len(letters) == 52  # 26 notes as written, 52 as played
    assert b_first[:8] == b_second[:8] and b_first[-1] == 67 and b_second[-1] == 64  # first and second ending
    assert [t // melody.bar_ticks for t in melody.sections] == [0, 2, 4, 6]


def test_sections_follow_the_pickup_and_skip_second_endings():
    melody = read_abc_tune(PICKUP_TUNE)
    bar = melody.bar_ticks
    pickup = melody.notes[0].onset
    assert pickup == bar - bar // 6  # one quaver before the first downbeat
    # A from its pickup, A again from the repeat sign (after the pickup), B, B again; the second
    # endings continue their section, and the bar line right after the pickup starts nothing
    assert melody.sections == (pickup, 5 * bar, 9 * bar - bar // 6, 13 * bar - bar // 6)


def test_sections_survive_a_midi_round_trip():
    melody = read_abc_tune(REPEATED_TUNE)
    again = read_midi(write_midi([("melody", melody)]))
    assert again.notes == melody.notes and again.sections == melody.sections
