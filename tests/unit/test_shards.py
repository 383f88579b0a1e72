"""The shard layout (``musicgen.data.shards``) and what evaluation reads of it: each split once, and
the same splits for its exact-copy set and its novelty index."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from musicgen.data import shards
from musicgen.data.preprocess import INTERNAL_COLUMNS, PARSED_SCHEMA
from musicgen.music.melody import interval_fingerprints
from musicgen.tokenizers import EventTokenizer
from tests.conftest import STYLES, hymn, jig, shard_rows, write_shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Shards of every split, written as the preprocessing job writes them: jigs and hymns."""
    root = str(tmp_path_factory.mktemp("shards"))
    tok = EventTokenizer(STYLES)
    rng = random.Random(3)
    melodies = {}
    for split, n in (("train", 30), ("val", 6), ("test", 12)):
        for style, make in (("irish_folk", jig), ("bach_chorale", hymn)):
            melodies[split, style] = [make(rng) for _ in range(n)]
    write_shards(root, tok, melodies)
    return root, melodies


def test_the_layout(corpus):
    root, _ = corpus
    assert shards.SPLITS == ("train", "val", "test")
    assert shards.split_uri("s3://b/data", "val") == "s3://b/data/melodies/split=val"
    assert shards.present_splits(root) == ["train", "val", "test"]
    assert shards.present_splits(root, ["test", "train"]) == ["train", "test"]  # always in SPLITS order
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        shards.split_uri(root, "validation")
    with pytest.raises(FileNotFoundError, match="no preprocessed melodies"):
        shards.present_splits(root + "/nothing-here")
    # the job's rows are the shard columns, in order, then its own
    assert PARSED_SCHEMA.names == [*shards.SHARD_SCHEMA.names, *INTERNAL_COLUMNS]
    assert "sections" in shards.SHARD_SCHEMA.names


def test_read_splits_reads_what_was_written(corpus):
    root, melodies = corpus
    tables = shards.read_splits(root, columns=("melody_id", "style"))
    assert list(tables) == ["train", "val", "test"]
    assert {s: t.num_rows for s, t in tables.items()} == {"train": 60, "val": 12, "test": 24}
    assert tables["val"].schema.names == ["melody_id", "style"]
    assert shards.read_vocab(root)["name"] == "events"


def test_a_split_reads_back_in_the_same_order_however_its_files_were_written(corpus, tmp_path):
    root, melodies = corpus
    # the job's workers finish in any order: the same melodies, their parts and rows the other way round
    reversed_root, tok = str(tmp_path / "reversed"), EventTokenizer(STYLES)
    for (split, style), items in reversed(melodies.items()):
        rows = shard_rows(tok, items, split, style)
        shards.write_split_part(rows.take(list(range(rows.num_rows))[::-1]), pafs.LocalFileSystem(),
                                shards.melodies_uri(reversed_root), split, f"part-{style}")
    for split in shards.SPLITS:
        table = shards.read_split(root, split, ("tokens", "style"))
        assert table.equals(shards.read_split(reversed_root, split, ("tokens", "style")))
        assert table.schema.names == ["tokens", "style"]  # the id it is ordered by is not added
        ids = shards.read_split(root, split, ("melody_id",)).column("melody_id").to_pylist()
        assert ids == sorted(ids)


def test_a_shard_part_must_have_the_shard_schema(tmp_path):
    with pytest.raises(ValueError, match="shard schema"):
        shards.write_split_part(pa.table({"tokens": [[1, 2]]}), pafs.LocalFileSystem(), str(tmp_path), "train", "p")


def test_copy_checks_cover_every_split_the_model_saw_or_was_tuned_on():
    # train (learned) and val (best checkpoint picked on it) must be in, and test is a real corpus tune too
    assert shards.COPY_CHECK_SPLITS == ("train", "val", "test")


def test_evaluation_copy_set_and_novelty_index_use_the_same_splits(corpus):
    from musicgen.evaluation.report import copy_checks, read_corpus

    root, melodies = corpus
    read = read_corpus(root)
    reference, fingerprints = copy_checks(read)
    ids = [i for split in shards.COPY_CHECK_SPLITS for i in read[split][0]]
    assert reference.ids == ids and len(ids) == 96
    assert fingerprints == {interval_fingerprints(x.melody, 16)[0] for s in shards.COPY_CHECK_SPLITS
                            for x in read[s][1] if len(x.melody.notes) > 1}
    copied = melodies["val", "irish_folk"][2]  # a validation melody: caught by both checks
    assert interval_fingerprints(copied, 16)[0] in fingerprints
    run = reference.longest_shared_run(copied)
    assert run.length == len(copied.notes) - 1  # every interval of it


def test_evaluate_reads_each_split_once(corpus, tiny_artifact, tmp_path, monkeypatch):
    from musicgen.evaluation.report import EvaluateConfig, run_evaluation

    root, _ = corpus
    reads = []
    real = shards.read_split

    def counted(data, split, columns=shards.DEFAULT_COLUMNS):
        reads.append(split)
        return real(data, split, columns)

    monkeypatch.setattr(shards, "read_split", counted)
    report = run_evaluation(EvaluateConfig(models=(tiny_artifact,), data=root, out=str(tmp_path / "report"),
                                           n_per_style=2, bars=2, previews_per_style=0))
    assert sorted(reads) == sorted(shards.SPLITS)
    assert report["models"][0]["n"] == 4
