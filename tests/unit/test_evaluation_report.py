"""``run_evaluation`` end to end on a small synthetic corpus: a catalog of copies is caught, a
catalog of new melodies in the right styles scores high fidelity (judged on Ray), and the report is written."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicgen import storage
from musicgen.evaluation.report import EvaluateConfig, run_evaluation
from musicgen.evaluation.text import format_style_table, format_summary
from musicgen.music.midi import write_midi
from musicgen.tokenizers import EventTokenizer
from tests.conftest import STYLES, hymn, jig

STYLE_MAKERS = {"irish_folk": jig, "bach_chorale": hymn}


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory):
    """Shards laid out as preprocessing writes them: jigs as irish_folk, hymns as bach_chorale."""
    root = tmp_path_factory.mktemp("corpus")
    tok = EventTokenizer(STYLES)
    rng = random.Random(1)
    for split, n in (("train", 60), ("test", 25)):
        rows = [{"melody_id": f"{split}-{style}-{i}", "style": style, "tokens": tok.encode(make(rng), style)}
                for style, make in STYLE_MAKERS.items() for i in range(n)]
        (root / "melodies" / f"split={split}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "melodies" / f"split={split}" / "part-0.parquet")
    storage.write_json(str(root / "vocab.json"), tok.to_dict())
    return str(root)


def _catalog(path, melodies_by_style) -> str:
    rows = []
    for style, melodies in melodies_by_style.items():
        (path / style).mkdir(parents=True, exist_ok=True)
        for i, melody in enumerate(melodies):
            (path / style / f"{i}.mid").write_bytes(write_midi([(style, melody)]))
            rows.append({"id": f"{style}-{i}", "style": style, "mid_path": f"{style}/{i}.mid", "model_name": "test"})
    pq.write_table(pa.Table.from_pylist(rows), path / "manifest.parquet")
    return str(path)


@pytest.mark.integration  # the catalog is judged by a Ray Data actor pool
def test_new_melodies_in_style_score_high_and_copies_are_caught(synthetic_corpus, tmp_path, ray_local):
    # a catalog is judged by a Ray Data actor pool (MelodyJudge), here on a 2-CPU local cluster
    from musicgen.evaluation.report import corpus_melodies

    rng = random.Random(99)
    fresh = _catalog(tmp_path / "fresh", {s: [make(rng) for _ in range(12)] for s, make in STYLE_MAKERS.items()})
    report = run_evaluation(EvaluateConfig(models=(), data=synthetic_corpus, out=str(tmp_path / "r1"), generated=fresh))
    result = report["models"][0]
    assert report["classifier"]["real_accuracy"]["all"] >= 0.9
    assert result["style_fidelity"]["all"] >= 0.9
    assert result["novelty"]["exact_copies"] == 0
    assert all(v >= 0.3 for v in result["metric_overlap"].values())  # same generators, same distributions
    table = format_style_table(report).splitlines()
    rows = {line.split()[0]: line for line in table[2:]}
    assert set(rows) == set(STYLE_MAKERS) and all(" 12 " in row for row in rows.values())
    # the same generators as the corpus: each tonal metric's mean lands near the real one
    assert all(row.count("*") == 3 for row in rows.values()), table

    test = corpus_melodies(synthetic_corpus, "test")
    copies = _catalog(tmp_path / "copies", {s: [x.melody for x in test if x.style == s][:5] for s in STYLE_MAKERS})
    report = run_evaluation(EvaluateConfig(models=(), data=synthetic_corpus, out=str(tmp_path / "r2"), generated=copies,
                                           copy_threshold=12))  # the hymns have 15 intervals
    novelty = report["models"][0]["novelty"]
    assert novelty["exact_copies"] == 10 and novelty["share_at_or_above_copy_threshold"] == 1.0
    assert "exact copies 10" in format_summary(report)


def test_models_are_compared_side_by_side_with_plots(synthetic_corpus, tiny_artifact, tmp_path):
    out = tmp_path / "report"
    report = run_evaluation(EvaluateConfig(models=(tiny_artifact, tiny_artifact), data=synthetic_corpus, out=str(out),
                                           n_per_style=4, bars=4))
    assert [r["n"] for r in report["models"]] == [8, 8]  # the two styles of the corpus
    assert json.loads((out / "report.json").read_text())["styles"] == ["bach_chorale", "irish_folk"]
    markdown = (out / "report.md").read_text()
    assert markdown.count("lstm:tiny-lstm") >= 2 and "style fidelity" in markdown
    # two models of one run name are told apart by their weights' version
    version = report["models"][1]["model_version"]
    assert [r["label"] for r in report["models"]] == ["lstm:tiny-lstm", f"lstm:tiny-lstm ({version})"]
    for name in ("model0-confusion.png", "model1-irish_folk-metrics.png", "model0-bach_chorale-0.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
