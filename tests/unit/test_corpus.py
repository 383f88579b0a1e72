"""Exporting the music21 corpus as MIDI (musicgen.data.corpus), on a few items per style."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

pytest.importorskip("music21")

from musicgen.data import corpus  # noqa: E402
from musicgen.music import notation  # noqa: E402
from musicgen.music.abc_tunes import abc_tune_number  # noqa: E402
from musicgen.music.midi import read_midi  # noqa: E402

STYLES = ["bach_chorale", "irish_folk", "renaissance"]


def _rows(out_dir):
    with open(out_dir / "corpus.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = corpus.export_corpus(out, STYLES, limit_per_style=3, workers=2, progress=False)
    return out, summary


def test_layout_and_csv(exported):
    out, summary = exported
    assert summary["failed"] == 0 and summary["skipped"] == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(STYLES)
    columns, rows = _rows(out)
    assert tuple(columns) == corpus.CSV_COLUMNS == ("path", "style", "work", "source", "title", "key", "meter")
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*.mid")}
    assert files == {r["path"] for r in rows}
    for style in STYLES:
        stats = summary["styles"][style]
        assert stats["items"] == stats["exported"] == 3
        assert stats["files"] == sum(r["style"] == style for r in rows)
        assert stats["works"] == len({r["work"] for r in rows if r["style"] == style})
    for row in rows:
        assert row["path"].startswith(row["style"] + "/")
        assert row["key"].split()[1] in ("major", "minor") and "/" in row["meter"]
    # the limited order goes round-robin over the collections of a style
    irish_sources = {r["source"].split("/")[0] for r in rows if r["style"] == "irish_folk"}
    assert irish_sources == {"oneills1850", "ryansMammoth", "essenFolksong"}


def test_every_midi_parses(exported):
    out, _ = exported
    _, rows = _rows(out)
    for row in rows:
        melody = read_midi((out / row["path"]).read_bytes())
        assert len(melody.notes) > 0
        assert melody.key == row["key"]


def test_chorale_is_four_named_tracks_and_soprano_is_picked(exported):
    from symusic import Score

    out, _ = exported
    _, rows = _rows(out)
    chorales = [r for r in rows if r["style"] == "bach_chorale"]
    assert len(chorales) == 3
    for row in chorales:
        data = (out / row["path"]).read_bytes()
        assert [t.name for t in Score.from_midi(data).tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert read_midi(data).meta["track"] == "Soprano"
        assert row["work"].startswith("bach/bwv") and row["source"].startswith("bach/")


def test_palestrina_voices_share_the_work(exported):
    out, _ = exported
    _, rows = _rows(out)
    by_source = defaultdict(list)
    for row in rows:
        if row["style"] == "renaissance":
            by_source[row["source"]].append(row)
    assert len(by_source) == 3
    for source, voices in by_source.items():
        assert len(voices) >= 4
        assert len({v["work"] for v in voices}) == 1
        stem = "palestrina-" + source.rsplit("/", 1)[1][: -len(".krn")]
        names = sorted(v["path"].rsplit("/", 1)[1] for v in voices)
        assert all(n.startswith(stem + "__") for n in names)
        assert [n[len(stem) + 2 :].split("-")[0] for n in names] == [str(i) for i in range(len(voices))]


def test_second_run_is_idempotent(exported):
    out, first = exported
    before = (out / "corpus.csv").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mid")}
    summary = corpus.export_corpus(out, STYLES, limit_per_style=3, workers=2, progress=False)
    assert summary["skipped"] == 9 and summary["failed"] == 0
    assert all(s["exported"] == 0 for s in summary["styles"].values())
    assert summary["files"] == first["files"]
    assert (out / "corpus.csv").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mid")} == mtimes


def test_a_bad_item_fails_alone(tmp_path, monkeypatch, caplog):
    real = notation.read_abc_tune

    def flaky(tune, meta=None, key_is_tonic=False):
        if abc_tune_number(tune) == 2:
            raise ValueError("boom")
        return real(tune, meta, key_is_tonic)

    monkeypatch.setattr(notation, "read_abc_tune", flaky)
    summary = corpus.export_corpus(tmp_path, ["chinese_folk"], limit_per_style=3, workers=1, progress=False)
    stats = summary["styles"]["chinese_folk"]
    assert (stats["failed"], stats["exported"]) == (1, 2) and summary["failed"] == 1
    _, rows = _rows(tmp_path)
    assert len(rows) == 2 and all("_x2" not in r["path"] for r in rows)
    assert "boom" in caplog.text

    # the failure is retried on the next run; the exported rows are kept
    monkeypatch.setattr(notation, "read_abc_tune", real)
    summary = corpus.export_corpus(tmp_path, ["chinese_folk"], limit_per_style=3, workers=1, progress=False)
    stats = summary["styles"]["chinese_folk"]
    assert (stats["skipped"], stats["exported"], stats["failed"]) == (2, 1, 0)
    assert len(_rows(tmp_path)[1]) == 3


def test_unknown_style_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        corpus.export_corpus(tmp_path, ["klezmer"], limit_per_style=1, progress=False)
