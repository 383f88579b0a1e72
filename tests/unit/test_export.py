"""Every output format, read back with the tools people open them with."""

import io
import json
import random
import wave
from fractions import Fraction

import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from music21 import converter, meter, tempo

from musicgen.music import export
from musicgen.music.export import (
    FORMATS,
    WavUnavailable,
    note_name,
    parse_formats,
    to_abc_text,
    to_json_dict,
    to_midi_bytes,
    to_musicxml_bytes,
    to_png_bytes,
    to_wav_bytes,
    wav_available,
    write_outputs,
)
from musicgen.music.melody import TICKS_PER_BEAT, Melody, Note
from musicgen.music.midi import read_midi
from tests.conftest import melodies, random_melody

# an eighth-triplet, a note tied over the bar line, a rest, notes outside the key and a long final note
TRIPLET_TIE = Melody(
    (Note(62, 0, 4), Note(64, 4, 4), Note(66, 8, 4), Note(67, 12, 12), Note(69, 24, 36), Note(70, 60, 6),
     Note(72, 72, 9), Note(74, 81, 3), Note(76, 84, 60)),
    (4, 4), "D major", 96.0, {"title": "Triplet and tie"},
)
# a 6/8 jig with a pickup, in a flat minor key
JIG = Melody(
    (Note(63, 30, 6), Note(67, 36, 12), Note(70, 48, 6), Note(68, 54, 18), Note(66, 72, 6), Note(65, 78, 6),
     Note(63, 84, 6), Note(71, 90, 18), Note(63, 108, 36)),
    (6, 8), "Eb minor", 120.0,
)
RANDOM = [random_melody(random.Random(i), 32, ts) for i, ts in enumerate([(4, 4), (3, 4), (6, 8), (9, 8), (5, 4)])]
MELODIES = [TRIPLET_TIE, JIG, *RANDOM]
needs_wav = pytest.mark.skipif(not wav_available(), reason="fluidsynth or a General MIDI soundfont is missing")


def musicxml_notes(data: bytes) -> list[tuple[int, Fraction, Fraction]]:
    """(MIDI pitch, onset, length) in quarter notes, ties joined, as music21 reads the file."""
    flat = converter.parse(data, format="musicxml").stripTies().flatten()
    return [(n.pitch.midi, Fraction(n.offset), Fraction(n.quarterLength)) for n in flat.notes]


def quarter_notes(melody: Melody) -> list[tuple[int, Fraction, Fraction]]:
    return [(n.pitch, Fraction(n.onset, TICKS_PER_BEAT), Fraction(n.duration, TICKS_PER_BEAT)) for n in melody.notes]


@pytest.mark.parametrize("melody", MELODIES)
def test_midi_reads_back_to_the_same_melody(melody):
    data = to_midi_bytes(melody, "lead")
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert [n.pitch for n in pm.instruments[0].notes] == [n.pitch for n in melody.notes]
    assert read_midi(data) == melody  # notes, meter, key and tempo


@pytest.mark.parametrize("melody", MELODIES)
def test_abc_reads_back_in_music21_to_the_same_pitches(melody):
    text = to_abc_text(melody, "check")
    assert text.startswith("%abc-2.1\nX:1\nT:check\n")
    flat = converter.parse(text, format="abc").flatten()
    assert [n.pitch.midi for n in flat.notes if n.tie is None or n.tie.type == "start"] == [
        n.pitch for n in melody.notes
    ]


@pytest.mark.parametrize("melody", MELODIES)
def test_musicxml_reads_back_to_the_same_pitches_and_durations(melody):
    assert musicxml_notes(to_musicxml_bytes(melody, "check")) == quarter_notes(melody)


def test_musicxml_writes_triplets_ties_meter_key_and_tempo():
    data = to_musicxml_bytes(TRIPLET_TIE)
    assert b"<time-modification>" in data and b"<tuplet " in data  # bracketed, not just timed
    score = converter.parse(data, format="musicxml")
    assert score.metadata.bestTitle == "Triplet and tie"
    part = score.parts[0]
    measures = part.getElementsByClass("Measure")
    assert len(measures) == TRIPLET_TIE.n_bars
    triplet = measures[0].notes[:3]
    assert all(n.duration.tuplets and n.duration.tuplets[0].tupletMultiplier() == Fraction(2, 3) for n in triplet)
    # A4 from beat 3 of bar 1 for three beats: tied over the bar line
    assert [(n.pitch.midi, n.tie.type) for n in (measures[0].notes[-1], measures[1].notes[0])] == [
        (69, "start"), (69, "stop")
    ]
    assert part.recurse().getElementsByClass(meter.TimeSignature)[0].ratioString == "4/4"
    assert part.recurse().getElementsByClass("KeySignature")[0].sharps == 2
    assert part.recurse().getElementsByClass(tempo.MetronomeMark)[0].number == 96
    assert [p.name for p in part.stripTies().pitches][5:7] == ["A#", "C"]  # a sharp key's spelling, not B-, B#


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(melodies(max_notes=16))
def test_property_musicxml_keeps_any_melody(melody):
    """Any tick length (a 48th-note triplet, 200 ticks over several bars) comes back exactly."""
    assert musicxml_notes(to_musicxml_bytes(melody)) == quarter_notes(melody)


@pytest.mark.parametrize(
    ("pitch", "key", "name"),
    [(60, "C major", "C4"), (70, "F major", "Bb4"), (70, "B major", "A#4"), (72, "D major", "C5"),
     (71, "Gb major", "Cb5"), (60, "C# major", "B#3"), (63, "E major", "D#4"), (63, "C minor", "Eb4")],
)
def test_note_names_are_spelled_for_the_key(pitch, key, name):
    assert note_name(pitch, key) == name


@pytest.mark.parametrize("melody", [TRIPLET_TIE, JIG])
def test_json_round_trips(melody):
    data = json.loads(json.dumps(to_json_dict(melody, style="irish_folk", seed=3)))
    notes = tuple(Note(n["pitch"], n["onset_ticks"], n["duration_ticks"]) for n in data["notes"])
    n, d = map(int, data["time_signature"].split("/"))
    assert Melody(notes, (n, d), data["key"], data["tempo"]) == melody
    assert data["bars"] == melody.n_bars and data["meta"]["seed"] == 3
    seconds_per_beat = 60 / melody.tempo
    for note, row in zip(melody.notes, data["notes"], strict=True):
        assert row["onset_beats"] == pytest.approx(note.onset / TICKS_PER_BEAT, abs=1e-6)
        assert row["duration_seconds"] == pytest.approx(note.duration / TICKS_PER_BEAT * seconds_per_beat, abs=1e-6)
        assert row["name"] == note_name(note.pitch, melody.key)


def test_png_is_a_png_and_leaves_pyplot_alone():
    import matplotlib.pyplot as plt

    figures = plt.get_fignums()
    for melody in (TRIPLET_TIE, Melody((), (3, 4), "C major", 100.0)):
        assert to_png_bytes(melody, "roll").startswith(b"\x89PNG\r\n\x1a\n")
    assert plt.get_fignums() == figures


@needs_wav
def test_wav_is_riff_wave_as_long_as_the_melody():
    data = to_wav_bytes(TRIPLET_TIE)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 44100
        assert w.getnframes() / w.getframerate() >= TRIPLET_TIE.end / TICKS_PER_BEAT * 60 / TRIPLET_TIE.tempo


@pytest.mark.parametrize("missing", ["soundfont", "fluidsynth"])
def test_missing_wav_tools_are_a_clear_error_and_write_outputs_skips_wav(tmp_path, monkeypatch, caplog, missing):
    if missing == "soundfont":
        monkeypatch.setenv("MUSICGEN_SOUNDFONT", str(tmp_path / "none.sf2"))
    else:
        monkeypatch.setattr(export.shutil, "which", lambda name: None)
    assert not wav_available()
    message = "set MUSICGEN_SOUNDFONT" if missing == "soundfont" else "fluidsynth program"
    with pytest.raises(WavUnavailable, match=message):
        to_wav_bytes(JIG)
    written = write_outputs(JIG, str(tmp_path), "jig", ["mid", "wav"])
    assert list(written) == ["mid"] and "skipping jig.wav" in caplog.text


def test_write_outputs_writes_every_format(tmp_path):
    written = write_outputs(TRIPLET_TIE, str(tmp_path / "out"), "tune-1", FORMATS, title="Tune", metadata={"seed": 1})
    expected = [f for f in FORMATS if f != "wav" or wav_available()]
    assert list(written) == expected
    for fmt, uri in written.items():
        assert uri == str(tmp_path / "out" / f"tune-1.{fmt}")
        assert (tmp_path / "out" / f"tune-1.{fmt}").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "tune-1.json").read_text())["meta"] == {"title": "Triplet and tie", "seed": 1}
    assert not list((tmp_path / "out").glob("*.tmp-*"))


def test_parse_formats():
    assert parse_formats("all") == FORMATS
    assert parse_formats(" MID, json,mid ") == ("mid", "json")
    with pytest.raises(ValueError, match="unknown format ogg; choose from mid, abc, musicxml, json, wav, png"):
        parse_formats("mid,ogg")
    with pytest.raises(ValueError):
        parse_formats(",")


@pytest.mark.parametrize("key, pitches, spelled", [
    ("G minor", [67, 69, 70, 72, 74, 75, 76, 78, 79], ["G", "A", "B", "c", "d", "e", "=e", "^f", "g"]),
    ("D minor", [62, 64, 65, 67, 69, 71, 73, 74], ["D", "E", "F", "G", "A", "=B", "^c", "d"]),
    ("C minor", [60, 62, 63, 65, 67, 69, 71, 72], ["C", "D", "E", "F", "G", "=A", "=B", "c"]),
])
def test_the_raised_sixth_and_seventh_of_a_minor_key_are_spelled_as_raised_letters(key, pitches, spelled):
    """The leading tone of G minor is F#, not Gb: its letter is the 7th's (and the tune reads back the same)."""
    from musicgen.music.abc import to_abc
    from musicgen.music.notation import read_notation

    melody = Melody(tuple(Note(p, 12 * i, 12) for i, p in enumerate(pitches)), (4, 4), key)
    text = to_abc(melody)
    body = text.strip().splitlines()[-1]
    assert [t for t in body.replace("|", " ").replace("]", " ").split() if t] == [s + "2" for s in spelled], text
    again = read_notation(text.encode(), ".abc")[0]
    assert [n.pitch for n in again.notes] == pitches
