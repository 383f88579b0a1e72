"""The preprocessing job end to end on a real Ray cluster: local folders and a loopback S3 server."""

from __future__ import annotations

import json
import os
import random
import shutil

import music21
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from musicgen import storage
from musicgen.cli import main
from musicgen.config import PreprocessConfig
from musicgen.data.preprocess import run_preprocess
from musicgen.music.form import COPIES_PER_FORM, parse_copies
from musicgen.music.midi import write_midi
from musicgen.tokenizers import tokenizer_from_dict
from tests.conftest import random_melody

pytestmark = pytest.mark.integration
M21_CORPUS = os.path.join(os.path.dirname(music21.__file__), "corpus")


def _read_shards(output: str):
    fs, path = storage.resolve(storage.join(output, "melodies"))
    return pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table()


def _add_bad_files(folder):
    (folder / "empty.mid").write_bytes(b"")
    (folder / "notes.mid").write_text("this is a text file, not MIDI")
    good = next(folder.glob("*.mid")).read_bytes()
    (folder / "truncated.mid").write_bytes(good[: len(good) // 3])
    (folder / "header_only.mid").write_bytes(good[:14])


def test_local_job_on_real_corpus_with_notation_and_corrupt_files(ray_local, real_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(real_corpus, corpus)
    _add_bad_files(corpus / "irish_folk")
    # notation converted on the way in: a multi-tune ABC file, MusicXML and kern
    notation = corpus / "notation_mix"
    notation.mkdir()
    shutil.copy(os.path.join(M21_CORPUS, "essenFolksong", "testd.abc"), notation / "testd.abc")
    shutil.copy(os.path.join(M21_CORPUS, "bach", "bwv66.6.mxl"), notation / "bwv66.6.mxl")
    shutil.copy(os.path.join(M21_CORPUS, "palestrina", "Agnus_01.krn"), notation / "Agnus_01.krn")
    out = tmp_path / "shards"

    stats = run_preprocess(
        PreprocessConfig(inputs=(str(corpus),), output=str(out), val_fraction=0.2, test_fraction=0.2)
    )

    table = _read_shards(str(out))
    assert table.num_rows == stats["melodies"] > 0
    assert set(table.column("split").to_pylist()) <= {"train", "val", "test"}
    for column in ("melody_id", "style", "split", "source_uri", "tokens", "n_notes", "key", "time_signature", "tempo"):
        assert column in table.column_names
    assert str(table.schema.field("tokens").type) == "list<element: int16>"
    # every style, including the converted notation, produced melodies
    styles = set(table.column("style").to_pylist())
    assert {"bach_chorale", "irish_folk", "german_folk", "chinese_folk", "renaissance", "notation_mix"} <= styles
    sources = table.column("source_uri").to_pylist()
    assert sum("testd.abc#" in s for s in sources) >= 2, "each tune of the ABC file is a melody"
    assert any(s.endswith("bwv66.6.mxl") for s in sources) and any(s.endswith("Agnus_01.krn") for s in sources)
    # no piece in two splits
    rows = table.select(["piece_id", "split"]).to_pylist()
    splits_of_piece = {}
    for r in rows:
        splits_of_piece.setdefault(r["piece_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_piece.values())
    # tokens decode with the saved vocabulary, to melodies of the recorded length
    tokenizer = tokenizer_from_dict(json.loads((out / "vocab.json").read_text()))
    for r in table.slice(0, 20).to_pylist():
        melody, style = tokenizer.decode(r["tokens"])
        assert style == r["style"] and len(melody.notes) == r["n_notes"]
    # the four corrupt files are recorded, with a reason, and the job went on
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    bad = {os.path.basename(e["source_uri"]): e["error_kind"] for e in errors}
    assert bad["empty.mid"] == "empty_file" and bad["notes.mid"] == "not_midi"
    assert bad["truncated.mid"] in {"corrupt_midi", "no_notes"} and bad["header_only.mid"] == "no_notes"
    saved = json.loads((out / "stats.json").read_text())
    assert saved["files_failed"] >= 4 and saved["files_read"] == stats["files_read"]
    assert sum(sum(s["melodies"].values()) for s in saved["per_style"].values()) == table.num_rows
    # every kept melody is counted in its style's form mix (what `--form auto` draws from)
    assert all(sum(s["forms"].values()) == sum(s["melodies"].values()) for s in saved["per_style"].values())
    # and up to COPIES_PER_FORM melodies of each form record which bars repeat which (what auto copies)
    for s in saved["per_style"].values():
        assert set(s["copies"]) == set(s["forms"])
        assert all(len(maps) == min(s["forms"][form], COPIES_PER_FORM) for form, maps in s["copies"].items())
        assert all(0 <= source < bar for texts in s["copies"].values() for text in texts
                   for bar, source in parse_copies(text))
        # with the same melodies' lengths, in the same order (what a through-composed tune is drawn with)
        assert {form: len(bars) for form, bars in s["lengths"].items()} == {f: len(t) for f, t in s["copies"].items()}
        assert all(bars > 0 for lengths in s["lengths"].values() for bars in lengths)

    # a rerun replaces the shards rather than appending to them
    again = run_preprocess(
        PreprocessConfig(inputs=(str(corpus),), output=str(out), val_fraction=0.2, test_fraction=0.2)
    )
    assert _read_shards(str(out)).num_rows == again["melodies"] == stats["melodies"]


def test_cli_fails_only_when_nothing_usable_comes_out(ray_local, tmp_path, capsys):
    bad = tmp_path / "in" / "folk"
    bad.mkdir(parents=True)
    (bad / "a.mid").write_bytes(b"")
    (bad / "b.mid").write_text("nope")
    assert main(["preprocess", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 1
    assert "no usable melody" in capsys.readouterr().err
    assert main(["preprocess", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2


def test_s3_job_against_loopback_server(ray_local, s3_bucket, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    rng = random.Random(11)
    for style, meter in (("reels", (4, 4)), ("waltzes", (3, 4))):
        for i in range(12):
            melody = random_melody(rng, n_notes=rng.randint(12, 40), time_signature=meter)
            s3.put_object(Bucket=s3_bucket, Key=f"corpus/{style}/{i:02d}.mid", Body=write_midi([("Melody", melody)]))
    s3.put_object(Bucket=s3_bucket, Key="corpus/reels/broken.mid", Body=b"this is not a MIDI file at all")
    abc = open(os.path.join(M21_CORPUS, "essenFolksong", "testd.abc"), "rb").read()
    s3.put_object(Bucket=s3_bucket, Key="corpus/waltzes/tunes.abc", Body=abc)

    output = f"s3://{s3_bucket}/shards"
    assert main(["preprocess", "--input", f"s3://{s3_bucket}/corpus", "--output", output]) == 0

    table = _read_shards(output)
    assert table.num_rows >= 24
    assert set(table.column("style").to_pylist()) == {"reels", "waltzes"}
    assert all(uri.startswith(f"s3://{s3_bucket}/corpus/") for uri in table.column("source_uri").to_pylist())
    stats = storage.read_json(f"{output}/stats.json")
    assert stats["files_read"] == 26 and stats["errors"].get("not_midi") == 1
    errors = pq.read_table(storage.resolve(f"{output}/errors.parquet")[1], filesystem=storage.resolve(output)[0])
    assert errors.column("source_uri").to_pylist() == [f"s3://{s3_bucket}/corpus/reels/broken.mid"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="shards/")["Contents"]]
    assert any(k.startswith("shards/melodies/split=train/") and k.endswith(".parquet") for k in keys)
