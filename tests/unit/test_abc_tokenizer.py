"""The ABC tokenizer: exact round trips, readable canonical text, music21 agreement, junk tolerance."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicgen.music.abc import abc_length
from musicgen.music.melody import Melody, MelodyBatch, Note, key_name, parse_key
from musicgen.tokenizers import make_tokenizer
from musicgen.tokenizers.abc import AbcTokenizer

TOK = AbcTokenizer(["reel", "jig"])


def notes_from(pitches_and_lengths, start=0):
    """Consecutive notes from (pitch, ticks) pairs; pitch None is a rest."""
    notes, t = [], start
    for pitch, length in pitches_and_lengths:
        if pitch is not None:
            notes.append(Note(pitch, t, length))
        t += length
    return tuple(notes)


def assert_round_trip(melody: Melody) -> str:
    ids = TOK.encode_body(melody)
    back = TOK.decode_body(ids)
    assert back.notes == melody.notes
    assert back.time_signature == melody.time_signature
    assert back.key == key_name(*parse_key(melody.key))
    return TOK.render(melody)


# -- hand-built melodies ---------------------------------------------------
E = 6  # an eighth note in ticks

SCALE = Melody(notes_from([(p, E) for p in (67, 69, 71, 72, 74, 76, 78, 79)]), (4, 4), "G major")
PICKUP = Melody(
    notes_from([(62, E), (67, 2 * E), (67, E), (71, E), (74, 3 * E)], start=6 * E), (4, 4), "G major"
)
TRIPLETS = Melody(
    notes_from([(72, 4), (74, 4), (76, 4), (77, 12), (79, 4), (77, 4), (76, 4), (74, 12)]), (2, 4), "C major"
)
TIED = Melody(notes_from([(69, 6 * E), (71, 4 * E), (72, 2 * E)]), (4, 4), "A minor")
ACCIDENTALS = Melody(
    notes_from([(66, E), (66, E), (65, E), (66, E), (78, E), (66, E), (65, 2 * E), (66, E), (61, E)]),
    (4, 4),
    "C major",
)
FLAT_KEY = Melody(
    notes_from([(70, E), (71, E), (70, E), (63, E), (64, E), (63, E), (58, 2 * E), (71, E)]), (3, 4), "Bb major"
)
SHARP_KEY = Melody(
    notes_from([(66, E), (65, E), (66, E), (73, E), (72, E), (73, E), (70, E), (68, E)]), (4, 4), "F# minor"
)
JIG = Melody(
    notes_from(
        [(71, E), (76, 2 * E), (76, E), (78, E), (76, E), (78, E), (79, 3 * E), (78, 3 * E), (76, 6 * E)],
        start=5 * E,
    ),
    (6, 8),
    "E minor",
)
WALTZ = Melody(
    notes_from([(67, 2 * E), (None, 2 * E), (71, 2 * E), (74, 6 * E), (72, 4 * E), (71, 2 * E)]), (3, 4), "G major"
)
LONG = Melody(
    (Note(60, 3, 48 * 3 + 7), Note(61, 48 * 3 + 10, 1), Note(127, 160, 2), Note(0, 200, 96)), (4, 4), "Db major"
)
SIXTEENTHS = Melody(notes_from([(74, 3), (76, 3), (78, 9), (79, 1), (81, 2), (83, 5)], start=1), (7, 8), "D major")
EXTREMES = Melody(notes_from([(0, E), (1, E), (11, E), (60, E), (116, E), (126, E), (127, E)]), (5, 16), "C# major")

HAND_BUILT = [
    SCALE, PICKUP, TRIPLETS, TIED, ACCIDENTALS, FLAT_KEY, SHARP_KEY, JIG, WALTZ, LONG, SIXTEENTHS, EXTREMES,
]


@pytest.mark.parametrize("melody", HAND_BUILT, ids=lambda m: f"{m.key}-{m.time_signature}")
def test_hand_built_round_trip(melody):
    assert_round_trip(melody)


def test_vocabulary_is_one_token_per_character():
    tok = AbcTokenizer([])
    assert len(tok) == 3 + 95 + 1 == 99
    assert len(TOK) == 99 + 2
    assert TOK.vocab[3:] == [chr(c) for c in range(32, 127)] + ["\n", "STYLE_reel", "STYLE_jig"]
    text = TOK.render(JIG)
    assert TOK.encode_body(JIG) == [TOK.index[c] for c in text]
    assert make_tokenizer("abc", ["x"]).to_dict()["vocab"] == AbcTokenizer(["x"]).vocab


def test_canonical_text_scale_and_pickup():
    assert TOK.render(SCALE) == "M:4/4\nL:1/8\nK:G\nGA Bc de fg |]"
    assert TOK.render(PICKUP) == "M:4/4\nL:1/8\nK:G\nz6 DG- | GG Bd3 |]"


def test_canonical_text_ties_triplets_and_meters():
    assert TOK.render(TIED).splitlines()[2:] == ["K:Am", "A6 B2- | B2 c2 |]"]
    assert TOK.render(TRIPLETS).endswith("c2/3d2/3e2/3 f2 | g2/3f2/3e2/3 d2 |]")
    assert TOK.render(JIG).endswith("K:Em\nz5B | e2e fef | g3 f3 | e6 |]")
    assert TOK.render(WALTZ).endswith("G2 z2 B2 | d6 | c4 B2 |]")


def test_accidentals_hold_to_the_end_of_the_bar_per_letter_and_octave():
    body = TOK.render(ACCIDENTALS).splitlines()[-1]
    # ^F holds for F in its octave only; =F cancels it; the bar line resets everything
    assert body == "^FF =F^F ^fF =F2 | ^F^C |]"


def test_flat_and_sharp_keys_spell_from_the_key():
    assert TOK.render(FLAT_KEY).splitlines()[2:] == ["K:Bb", "B=B _BE =E_E | B,2 =B |]"]
    # F natural in F# minor is its leading tone, E#
    assert TOK.render(SHARP_KEY).splitlines()[2:] == ["K:F#m", "F^E Fc =c^c ^AG |]"]
    # a note outside the scale: sharps in sharp keys and C, flats in flat keys
    assert TOK.render(Melody((Note(63, 0, 6),), (4, 4), "D major")).endswith("^D |]")
    assert TOK.render(Melody((Note(63, 0, 6),), (4, 4), "C major")).endswith("^D |]")
    assert TOK.render(Melody((Note(61, 0, 6),), (4, 4), "F major")).endswith("_D |]")


def test_keys_keep_their_spelling_and_normalise_on_decode():
    assert "K:Db\n" in TOK.render(LONG)
    assert TOK.decode_body(TOK.encode_body(LONG)).key == "C# major"
    assert "K:C\n" in TOK.render(Melody(SCALE.notes, (4, 4), "B# major"))
    assert "K:Fm\n" in TOK.render(Melody(SCALE.notes, (4, 4), "E# minor"))


def test_long_note_spans_bars_and_lines():
    text = TOK.render(Melody((Note(62, 0, 48 * 5 + 6),), (4, 4), "D major"))
    assert text.splitlines()[3:] == ["D8- | D8- | D8- | D8- |", "D8- | D |]"]
    assert_round_trip(Melody((Note(62, 0, 48 * 5 + 6),), (4, 4), "D major"))


def test_lengths():
    assert [abc_length(t) for t in (6, 12, 3, 9, 4, 2, 1, 18, 5, 48)] == [
        "", "2", "/2", "3/2", "2/3", "/3", "/6", "3", "5/6", "8",
    ]


def test_full_sequence_round_trip_with_style_and_to_abc():
    melody, style = TOK.decode(TOK.encode(JIG, "jig"))
    assert melody.notes == JIG.notes and style == "jig"
    text = TOK.to_abc(JIG, title="The Test Jig")
    assert text.startswith("%abc-2.1\nX:1\nT:The Test Jig\n")
    back = TOK.from_abc_text(text)
    assert back.notes == JIG.notes and back.key == "E minor" and back.time_signature == (6, 8)
    assert back.tempo == JIG.tempo and back.meta["title"] == "The Test Jig"


def test_empty_melody():
    empty = Melody((), (3, 4), "A minor")
    assert TOK.render(empty) == "M:3/4\nL:1/8\nK:Am\n|]"
    assert_round_trip(empty)


def test_rejects_overlapping_notes():
    with pytest.raises(ValueError):
        TOK.encode_body(Melody((Note(60, 0, 12), Note(62, 6, 6)), (4, 4), "C major"))


def test_a_batch_encodes_melody_by_melody_and_reports_the_bad_one():
    """The default ``encode_many`` (what preprocessing calls): each melody's own tokens, an error for the bad one."""
    good = Melody(notes_from([(67, 6), (69, 6), (None, 12), (71, 24)]), (6, 8), "G major")
    bad = Melody((Note(60, 0, 12), Note(62, 6, 6)), (4, 4), "C major")
    values, offsets, errors = TOK.encode_many(MelodyBatch.from_melodies([good, bad, good]), ["jig", "reel", "reel"])
    assert values[offsets[0] : offsets[1]].tolist() == TOK.encode(good, "jig")
    assert values[offsets[2] : offsets[3]].tolist() == TOK.encode(good, "reel")
    assert offsets[1] == offsets[2] and errors[0] is None and errors[2] is None
    with pytest.raises(ValueError, match=re.escape(errors[1])):
        TOK.encode(bad, "reel")


# -- property-based round trip ----------------------------------------------
KEYS = [key_name(pc, mode) for pc in range(12) for mode in ("major", "minor")] + [
    "Db major", "Gb major", "Cb major", "A# minor", "D# minor", "Fb major", "E# minor", "bb", "D dorian",
]
durations = st.one_of(st.sampled_from([1, 2, 3, 4, 6, 8, 9, 12, 18, 24, 36, 48]), st.integers(1, 200))
pitches = st.one_of(st.integers(55, 80), st.integers(0, 127))
gaps = st.one_of(st.just(0), st.sampled_from([3, 4, 6, 12]), st.integers(0, 100))


@st.composite
def melodies(draw):
    time_signature = (draw(st.integers(1, 13)), draw(st.sampled_from((2, 4, 8, 16))))
    notes, t = [], draw(gaps)
    for pitch, duration, gap in draw(st.lists(st.tuples(pitches, durations, gaps), max_size=40)):
        notes.append(Note(pitch, t, duration))
        t += duration + gap
    return Melody(tuple(notes), time_signature, draw(st.sampled_from(KEYS)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(melodies())
def test_property_round_trip(melody):
    text = assert_round_trip(melody)
    assert set(text) <= set(TOK.vocab[3:])


# -- agreement with music21 ---------------------------------------------------
def music21_pitches_and_length(text: str) -> tuple[list[int], float]:
    music21 = pytest.importorskip("music21")
    score = music21.converter.parse(text, format="abc")
    flat = score.flatten()
    pitches = [n.pitch.midi for n in flat.notes if n.tie is None or n.tie.type == "start"]
    return pitches, float(flat.highestTime)


@pytest.mark.parametrize("melody", [PICKUP, TIED, ACCIDENTALS, FLAT_KEY, SHARP_KEY, JIG, WALTZ])
def test_music21_reads_the_same_pitches_and_length(melody):
    pitches, length = music21_pitches_and_length(TOK.to_abc(melody, title="check"))
    assert pitches == [n.pitch for n in melody.notes]
    assert length == melody.end / 12


# -- junk tolerance -----------------------------------------------------------
JUNK = [
    "",
    "K:",
    "M:0/0\nL:0/0\nK:Zz\n",
    "|||::]]][[[",
    "^^^___===",
    "A-B- -- z- -",
    "c'''''''''''''''''' C,,,,,,,,,,,,,,,,",
    "A99999999999 B/0 C0 z/0 D//////",
    '"Am"ABC !trill!D {g}E (3FGA [CEG] A>B x2 Z2 y',
    "[K:Bb][M:3/4][L:1/16]BBB | [Q:1/4=90]",
    "X:1\nT:a\nK:G\nGAB\nX:2\nT:b\nK:D\nDEF",
    "Q:1/0=0\nQ:abc\nM:C|\nK:Ddor\n^F=f\n%comment A\n%%propagate-accidentals pitch\n^F f",
    "\n\n\n\t~~~ ``` \\\\ @#$&*",
]


@pytest.mark.parametrize("text", JUNK)
def test_junk_text_decodes_without_raising(text):
    melody = TOK.from_abc_text(text)
    assert all(0 <= n.pitch <= 127 and n.duration > 0 for n in melody.notes)
    assert all(a.onset + a.duration <= b.onset for a, b in zip(melody.notes, melody.notes[1:], strict=False))


def _valid(melody) -> bool:
    """What any decoded melody promises: MIDI pitches, positive durations, one note at a time."""
    return all(0 <= n.pitch <= 127 and n.duration > 0 for n in melody.notes) and all(
        a.onset + a.duration <= b.onset for a, b in zip(melody.notes, melody.notes[1:]))


def test_random_ids_decode_without_raising():
    rng = random.Random(0)
    decoded_notes = 0
    for _ in range(200):
        ids = [rng.randrange(len(TOK)) for _ in range(rng.randrange(0, 300))]
        melody, _ = TOK.decode(ids)
        assert _valid(melody)
        assert TOK.decode_body([*ids, -1, len(TOK) + 7]) == TOK.decode_body(ids)  # out-of-range ids are skipped
    # character soup biased towards ABC symbols
    alphabet = "ABCDEFGabcdefgz^_=,'/23468| -\n:[]KML"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        melody = TOK.decode_body([TOK.index[c] for c in text])
        assert _valid(melody)
        decoded_notes += len(melody.notes)
    assert decoded_notes > 0  # the soup is read as music, not thrown away


def test_lenient_parsing_of_common_abc():
    melody = TOK.from_abc_text("X:1\nT:t\nM:C\nL:1/4\nK:Ddor\n|: A B/ c/ d2 :|\n")
    assert melody.time_signature == (4, 4) and melody.key == "D minor"
    assert [n.pitch for n in melody.notes] == [69, 71, 72, 74]
    assert [n.duration for n in melody.notes] == [12, 6, 6, 24]
