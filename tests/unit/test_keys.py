"""musicgen.music.keys and musicgen.music.formats: the music facts every reader, writer and tokenizer shares."""

import pytest

from musicgen.music import abc
from musicgen.music.formats import INPUT_SUFFIXES, NOTATION_SUFFIXES, OUTPUT_FORMATS, SERVED_FORMATS, output_format
from musicgen.music.keys import (
    MAJOR_SCALE,
    MINOR_SCALE,
    MODE_ABBREVIATIONS,
    MODE_FIFTHS,
    PITCH_CLASS_NAMES,
    key_from_sharps,
    key_name,
    key_signature,
    key_spelling,
    key_to_sharps,
    mode_family,
    parse_key,
)

ALL_KEYS = [key_name(pc, mode) for pc in range(12) for mode in ("major", "minor")]


@pytest.mark.parametrize("key", ALL_KEYS)
def test_key_and_sharps_both_ways(key):
    sharps = key_to_sharps(key)
    assert -7 <= sharps <= 7
    assert key_from_sharps(sharps, parse_key(key)[1] == "minor") == key


@pytest.mark.parametrize(("key", "spelling"), [
    ("C major", ("C", 0)), ("A minor", ("A", 0)), ("F# minor", ("F#", 3)), ("Db major", ("Db", -5)),
    ("Bb minor", ("Bb", -5)), ("B# major", ("C", 0)), ("E# minor", ("F", -4)), ("Cb major", ("Cb", -7)),
    ("C# major", ("C#", 7)), ("G# minor", ("G#", 5)),
])
def test_the_tonic_keeps_its_spelling_within_seven_accidentals(key, spelling):
    assert key_spelling(key) == spelling


def test_key_signature_letters():
    assert key_signature(0) == dict.fromkeys("CDEFGAB", 0)
    assert key_signature(2) == {**dict.fromkeys("CDEFGAB", 0), "F": 1, "C": 1}
    assert key_signature(-3) == {**dict.fromkeys("CDEFGAB", 0), "B": -1, "E": -1, "A": -1}
    assert key_signature(9) == key_signature(7) == dict.fromkeys("CDEFGAB", 1)


def test_scales_follow_from_the_key_signature():
    for pc, name in enumerate(PITCH_CLASS_NAMES):
        for mode, scale in (("major", MAJOR_SCALE), ("minor", MINOR_SCALE)):
            sig = key_signature(key_to_sharps(key_name(pc, mode)))
            naturals = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
            assert sorted((naturals[k] + a) % 12 for k, a in sig.items()) == sorted((pc + s) % 12 for s in scale), name


def test_modes_map_to_the_nearest_of_major_and_minor():
    minor = {"dorian", "phrygian", "aeolian", "locrian", "minor"}
    for name in MODE_FIFTHS:
        assert mode_family(name) == ("minor" if name in minor else "major")
        assert mode_family(name[:3]) == mode_family(name)
    assert set(MODE_ABBREVIATIONS) == {"ion", "maj", "mix", "lyd", "dor", "phr", "aeo", "loc", "min"}
    assert mode_family("") == mode_family("nonsense") == mode_family("major") == "major"


@pytest.mark.parametrize(("field", "key", "first_pitches"), [
    ("Ador", "A minor", [69, 71, 72, 74]),  # dorian: one sharp, F#
    ("Gmix", "G major", [69, 71, 72, 74]),  # mixolydian: no sharps
    ("Em", "E minor", [69, 71, 72, 74]),
    ("D", "D major", [69, 71, 73, 74]),
    ("Bbloc", "Bb minor", [68, 70, 71, 73]),  # locrian on Bb: seven flats, so c is Cb
])
def test_abc_reader_key_fields(field, key, first_pitches):
    melody = abc.from_abc_text(f"X:1\nM:4/4\nL:1/8\nK:{field}\nABcd |]\n")
    assert melody.key == key
    assert [n.pitch for n in melody.notes][:4] == first_pitches


def test_format_names_and_suffixes():
    assert OUTPUT_FORMATS[0] == "mid" and "midi" in SERVED_FORMATS
    assert output_format("midi") == "mid" and output_format("abc") == "abc"
    assert {output_format(f) for f in SERVED_FORMATS} <= set(OUTPUT_FORMATS)
    assert INPUT_SUFFIXES == (".mid", ".midi", *NOTATION_SUFFIXES)
    assert len(set(INPUT_SUFFIXES)) == len(INPUT_SUFFIXES) and all(s == s.lower() for s in INPUT_SUFFIXES)


def test_the_service_format_type_is_the_served_formats():
    from typing import get_args

    from musicgen.serving.schemas import FORMATS, Format

    assert get_args(Format) == FORMATS == SERVED_FORMATS
