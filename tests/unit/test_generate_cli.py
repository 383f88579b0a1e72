"""`musicgen generate`: files in every format, reproducible seeds, primers, clear errors."""

import io
import json

import pretty_midi
import pytest
from music21 import converter

from musicgen.cli import main
from musicgen.music.export import FORMATS, to_abc_text, to_midi_bytes, wav_available
from musicgen.music.melody import Melody, Note
from musicgen.music.midi import read_midi

# two bars of 3/4 to continue
PRIMER = Melody(
    (Note(67, 0, 12), Note(69, 12, 6), Note(71, 18, 6), Note(72, 24, 12), Note(71, 36, 12), Note(69, 48, 6),
     Note(67, 54, 6), Note(66, 60, 12)),
    (3, 4), "G major", 100.0,
)


def generate(model: str, out, *flags: str) -> int:
    return main(["generate", "--model", model, "--out", str(out), "--bars", "4", *flags])


def test_every_format_is_written_and_readable(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate(tiny_artifact, out, "--style", "irish_folk", "--n", "2", "--seed", "7",
                    "--time-signature", "6/8", "--format", "all") == 0
    expected = {f"irish_folk-{seed}.{fmt}" for seed in (7, 8) for fmt in FORMATS if fmt != "wav" or wav_available()}
    assert {p.name for p in out.iterdir()} == expected
    for seed in (7, 8):
        stem = out / f"irish_folk-{seed}"
        melody = read_midi((out / f"{stem.name}.mid").read_bytes())
        assert melody.time_signature == (6, 8)
        pm = pretty_midi.PrettyMIDI(io.BytesIO((out / f"{stem.name}.mid").read_bytes()))
        pitches = [n.pitch for n in pm.instruments[0].notes]
        assert pitches == [n.pitch for n in melody.notes]
        xml = converter.parse((out / f"{stem.name}.musicxml").read_bytes(), format="musicxml").stripTies()
        assert [n.pitch.midi for n in xml.flatten().notes] == pitches
        abc = converter.parse((out / f"{stem.name}.abc").read_text(), format="abc").flatten()
        assert [n.pitch.midi for n in abc.notes if n.tie is None or n.tie.type == "start"] == pitches
        data = json.loads((out / f"{stem.name}.json").read_text())
        assert data["meta"]["seed"] == seed and data["meta"]["style"] == "irish_folk"
        assert data["meta"]["model"] == "lstm" and data["time_signature"] == "6/8"
        assert [n["pitch"] for n in data["notes"]] == pitches
        assert (out / f"{stem.name}.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "irish_folk-7" in printed and "irish_folk-8" in printed and "6/8" in printed
    assert f"files written to {out}" in printed


def test_same_seed_gives_the_same_midi(tiny_artifact, tmp_path):
    for run in ("a", "b"):
        assert generate(tiny_artifact, tmp_path / run, "--style", "german_folk", "--seed", "3",
                        "--time-signature", "4/4", "--format", "mid", "--key", "D minor") == 0
    first, second = ((tmp_path / run / "german_folk-3.mid").read_bytes() for run in ("a", "b"))
    assert first == second
    assert read_midi(first).key == "D minor"


def test_a_seed_gives_the_same_melody_whatever_n(tiny_artifact, tmp_path, monkeypatch):
    from musicgen.sampling import MelodyGenerator

    timed_at = []
    load = MelodyGenerator.from_artifact.__func__
    monkeypatch.setattr(MelodyGenerator, "from_artifact", classmethod(
        lambda cls, *args, **kwargs: timed_at.append(kwargs.get("batch_sizes")) or load(cls, *args, **kwargs)))
    assert generate(tiny_artifact, tmp_path / "many", "--style", "irish_folk", "--n", "5", "--format", "mid") == 0
    assert generate(tiny_artifact, tmp_path / "one", "--style", "irish_folk", "--seed", "4", "--format", "mid") == 0
    assert timed_at[0] == timed_at[1], "auto's precision timed at the same batch sizes"
    assert (tmp_path / "many" / "irish_folk-4.mid").read_bytes() == (tmp_path / "one" / "irish_folk-4.mid").read_bytes()


@pytest.mark.parametrize("suffix", [".mid", ".abc"])
def test_the_primer_starts_the_melody(tiny_artifact, tmp_path, suffix):
    primer = tmp_path / f"primer{suffix}"
    primer.write_bytes(to_midi_bytes(PRIMER) if suffix == ".mid" else to_abc_text(PRIMER).encode())
    assert generate(tiny_artifact, tmp_path / "out", "--style", "bach_chorale", "--primer", str(primer),
                    "--format", "json") == 0
    data = json.loads((tmp_path / "out" / "bach_chorale-0.json").read_text())
    notes = [Note(n["pitch"], n["onset_ticks"], n["duration_ticks"]) for n in data["notes"]]
    assert data["time_signature"] == "3/4" and data["bars"] == 4
    assert notes[: len(PRIMER.notes) - 1] == list(PRIMER.notes[:-1])
    last, ours = PRIMER.notes[-1], notes[len(PRIMER.notes) - 1]
    assert (ours.pitch, ours.onset) == (last.pitch, last.onset) and ours.duration >= last.duration  # may be held on
    assert len(notes) > len(PRIMER.notes) or notes[-1].duration > last.duration


def test_unknown_style_exits_2_and_lists_the_styles(tiny_artifact, tmp_path, capsys):
    assert generate(tiny_artifact, tmp_path, "--style", "klezmer") == 2
    err = capsys.readouterr().err
    assert "unknown style 'klezmer'" in err and "irish_folk" in err and "bach_chorale" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--format", "mid,ogg"], "unknown format ogg; choose from mid, abc, musicxml, json, wav, png or all"),
        (["--primer", "song.txt"], "cannot read primer song.txt: use one of .mid, .midi, .abc"),
        (["--primer", "{tmp}/junk.mid"], "no MIDI header"),
        (["--primer", "{tmp}/missing.mid"], "missing.mid"),
        (["--key", "H minor"], "unknown key 'H minor'"),
        (["--time-signature", "six-eight"], "must look like"),
        (["--primer", "{tmp}/primer.mid", "--time-signature", "4/4"], "the primer is in 3/4"),
        (["--primer", "{tmp}/primer.mid", "--bars", "2"], "the primer already fills 2 bars"),
    ],
)
def test_bad_settings_exit_2_with_a_clear_message(tiny_artifact, tmp_path, capsys, flags, message):
    (tmp_path / "junk.mid").write_bytes(b"not midi at all")
    (tmp_path / "primer.mid").write_bytes(to_midi_bytes(PRIMER))
    flags = [f.format(tmp=tmp_path) for f in flags]
    assert main(["generate", "--model", tiny_artifact, "--out", str(tmp_path / "out"), "--style", "irish_folk",
                 *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--model", "--style", "--n", "--out", "--bars", "--temperature", "--top-k", "--top-p", "--seed",
                 "--key", "--tempo", "--time-signature", "--primer", "--format"):
        assert flag in out
    assert "default: mid,abc,json" in out and "MUSICGEN_SOUNDFONT" in out


def test_verbose_prints_the_precision_auto_chose_and_its_timings(tiny_artifact, tmp_path, capsys):
    assert generate(tiny_artifact, tmp_path, "--style", "irish_folk", "--n", "3", "--verbose") == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("precision ") and "ms per sampling step at batch 1, 32: fp32 " in line and "int8 " in line
    assert generate(tiny_artifact, tmp_path, "--style", "irish_folk", "--precision", "fp32", "-v") == 0
    assert capsys.readouterr().out.splitlines()[0] == "precision fp32 (as asked)"
