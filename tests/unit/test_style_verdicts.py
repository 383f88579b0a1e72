"""Per-melody style verdicts (issue #24 item 5): the style classifier rides along in the model artifact,
the one loader reads it, and every melody of the bulk job's manifest and of a Serve response carries the
probability of its style and its top style. ``--min-style-prob`` is a user's filter, reported as its own
rejection reason. No Ray cluster: the bulk actor and the Serve replica are driven in-process."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from musicgen.catalog.acceptance import StyleCatalog, check_style_filter, judge
from musicgen.catalog.bulk import REJECTED_SCHEMA, RESULT_SETTINGS
from musicgen.catalog.generate import CatalogGenerator
from musicgen.config import BulkConfig
from musicgen.evaluation.classifier import StyleClassifier as EvaluationsClassifier
from musicgen.evaluation.novelty import IntervalIndex
from musicgen.models import read_meta
from musicgen.models.style_classifier import StyleClassifier
from musicgen.models.style_companion import STYLE_CLASSIFIER_FILE, subsample
from musicgen.pretrained import pretrained_path
from musicgen.sampling import MelodyGenerator, SampleRequest
from tests.conftest import STYLES, save_tiny_artifact


@pytest.fixture(scope="module")
def judged(tiny_artifact) -> MelodyGenerator:
    return MelodyGenerator.from_artifact(tiny_artifact, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def unjudged(tmp_path_factory) -> MelodyGenerator:
    uri = save_tiny_artifact(str(tmp_path_factory.mktemp("bare") / "model"))
    return MelodyGenerator.from_artifact(uri, device="cpu", precision="fp32")


def test_the_classifier_moved_unchanged_and_evaluation_still_imports_it():
    assert EvaluationsClassifier is StyleClassifier


def test_the_loader_reads_the_companion_and_judges_each_melody(judged, unjudged):
    assert judged.meta.companions == {"style_classifier": STYLE_CLASSIFIER_FILE}
    assert judged.style_classifier.styles == tuple(sorted(STYLES)) and len(judged.style_classifier_version) == 12
    requests = [SampleRequest(style, seed, bars=4) for style in STYLES for seed in range(2)]
    generated = judged.generate(requests)
    verdicts = judged.verdicts([g.melody for g in generated], [r.style for r in requests])
    assert len(verdicts) == len(requests)
    for (prob, top), g in zip(verdicts, generated):
        assert 0 <= prob <= 1 and top in STYLES
        assert judged.verdict(g.melody, g.request.style) == (prob, top)
    assert unjudged.style_classifier is None
    assert unjudged.verdicts([g.melody for g in generated], [r.style for r in requests]) == [(None, None)] * 10


def _actor(generator: MelodyGenerator) -> CatalogGenerator:
    actor = CatalogGenerator("unused", "cpu", "fp32", reference=None, sampling={"bars": 4}, formats=("abc",),
                             loader=lambda *_, **__: generator)
    actor.reference = IntervalIndex(min_run=8)  # already fetched: no Ray object store here
    return actor


def test_every_bulk_row_carries_the_verdict(judged, unjudged):
    batch = pa.table({"style": ["irish_folk", "bach_chorale", "german_folk"], "seed": [0, 1, 2]})
    rows = _actor(judged)(batch).to_pylist()
    assert [r["error"] for r in rows] == [None] * 3
    for row in rows:
        assert 0 <= row["style_prob"] <= 1 and row["top_style"] in STYLES
    bare = _actor(unjudged)(batch)
    assert bare.column("style_prob").to_pylist() == [None] * 3 and bare.column("top_style").null_count == 3


def _row(style_prob: float | None) -> dict:
    return {"error": None, "n_notes": 20, "longest_shared_run": 0, "nearest_training_id": None,
            "fingerprint": f"f{style_prob}", "pitches": list(range(60, 80)), "style_prob": style_prob,
            "top_style": "irish_folk"}


def test_min_style_prob_is_a_reason_of_its_own_and_off_by_default():
    catalog = StyleCatalog(near_duplicate_threshold=16)
    off = BulkConfig(model="m", out="o", per_style=1)
    assert off.min_style_prob == 0 and "min_style_prob" in RESULT_SETTINGS
    assert judge(_row(0.01), catalog, off) is None and judge(_row(None), catalog, off) is None
    on = BulkConfig(model="m", out="o", per_style=1, min_style_prob=0.5)
    assert judge(_row(0.49), catalog, on) == ("off_style", 0, None)
    assert judge(_row(0.5), catalog, on) is None
    # the other filters come first: off_style counts only what the style filter alone turned away
    assert judge({**_row(0.1), "n_notes": 3}, catalog, on)[0] == "too_short"
    assert {"style_prob", "top_style"} <= set(REJECTED_SCHEMA.names)
    with pytest.raises(ValueError, match="probability"):
        BulkConfig(model="m", out="o", per_style=1, min_style_prob=1.5)


def test_min_style_prob_needs_a_classifier_that_knows_the_styles(judged, unjudged):
    on = BulkConfig(model="old-model", out="o", per_style=1, min_style_prob=0.3)
    with pytest.raises(ValueError, match="--min-style-prob needs a style classifier.*old-model carries none"):
        check_style_filter(on, unjudged, STYLES)
    check_style_filter(on, judged, STYLES)
    narrow = SimpleNamespace(style_classifier=SimpleNamespace(styles=("irish_folk", "german_folk")))
    with pytest.raises(ValueError, match="not fitted on bach_chorale"):
        check_style_filter(on, narrow, ("irish_folk", "bach_chorale"))
    check_style_filter(BulkConfig(model="m", out="o", per_style=1), unjudged, STYLES)  # off: nothing needed


def test_serve_returns_the_verdict_in_each_melodys_metadata(judged, unjudged):
    from musicgen.serving import app as serving

    cls = serving.StyleGenerator.func_or_class
    items = [(SampleRequest("irish_folk", seed, bars=4), ("abc",)) for seed in range(3)]
    for generator, expect in ((judged, True), (unjudged, False)):
        replica = cls.__new__(cls)
        replica.generator = generator
        out = replica._sample_now(items)
        assert len(out) == 3
        for melody in out:
            payload = json.loads(melody.model_dump_json())
            if expect:
                assert 0 <= payload["style_prob"] <= 1 and payload["top_style"] in STYLES
            else:
                assert payload["style_prob"] is None and payload["top_style"] is None


def test_the_shipped_model_carries_a_classifier_that_gives_probabilities():
    folder = pretrained_path()  # checked against SHA256SUMS, which lists the companion
    sums = (folder / "SHA256SUMS").read_text()
    assert STYLE_CLASSIFIER_FILE in sums
    meta = read_meta("pretrained")
    assert meta.companions == {"style_classifier": STYLE_CLASSIFIER_FILE}
    assert meta.training["style_classifier"]["per_style"] == 400
    generator = MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")
    classifier = generator.style_classifier
    assert classifier.styles == generator.styles
    expected = hashlib.sha256((folder / STYLE_CLASSIFIER_FILE).read_bytes()).hexdigest()[:12]
    assert generator.style_classifier_version == expected
    generated = generator.generate([SampleRequest(s, 0, bars=8) for s in generator.styles])
    p = classifier.probabilities([g.melody for g in generated])
    assert p.shape == (5, 5) and np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    for (prob, top), g, row in zip(generator.verdicts([g.melody for g in generated], list(generator.styles)),
                                   generated, p):
        assert prob == pytest.approx(row[classifier.styles.index(g.request.style)], abs=1e-6)
        assert top == classifier.styles[int(row.argmax())]


def test_the_fit_subsample_is_fixed_and_per_style():
    styles = ["a"] * 10 + ["b"] * 3 + ["a"] * 5
    chosen = subsample(styles, per_style=4, seed=0)
    assert chosen == subsample(styles, per_style=4, seed=0)
    assert sum(styles[i] == "a" for i in chosen) == 4 and sum(styles[i] == "b" for i in chosen) == 3


def test_a_model_without_a_classifier_is_refused_before_any_work(tmp_path):
    from musicgen.catalog.bulk import run_bulk

    bare = save_tiny_artifact(str(tmp_path / "model"))
    with pytest.raises(ValueError, match="--min-style-prob needs a style classifier"):
        run_bulk(BulkConfig(model=bare, out=str(tmp_path / "out"), per_style=1, min_style_prob=0.5))
    assert not (tmp_path / "out").exists()


def test_off_style_melodies_are_recorded_apart_and_summarised(judged):
    from collections import deque

    from musicgen.catalog.acceptance import style_verdicts
    from musicgen.catalog.bulk import Job
    from musicgen.catalog.progress import Progress

    config = BulkConfig(model="m", out="o", per_style=2, min_style_prob=0.5, formats=("abc",))
    job = Job.__new__(Job)
    job.config, job.generator, job.guidance = config, judged, 1.0
    job.progress = Progress({}, {"irish_folk": 0}, {"irish_folk": None})
    job.catalogs = {"irish_folk": StyleCatalog(config.near_duplicate_threshold)}
    written = []
    writer = SimpleNamespace(submit=lambda record, files: written.append(record))
    rows = {seed: {**_row(prob), "id": f"id{seed}", "style": "irish_folk", "seed": seed,
                   "fingerprint": f"f{seed}", "pitches": [60 + (i * (seed + 1)) % 11 for i in range(20)]}
            for seed, prob in enumerate([0.9, 0.2, 0.7])}
    job.decide_ready("irish_folk", deque(rows), {s: (r, {"abc": b""}) for s, r in rows.items()}, writer,
                     SimpleNamespace(update=lambda n: None))
    assert [r["seed"] for r in job.progress.accepted] == [0, 2]
    assert [(r["style_prob"], r["top_style"]) for r in job.progress.accepted] == [(0.9, "irish_folk"),
                                                                                 (0.7, "irish_folk")]
    assert [r["style_prob"] for r in written] == [0.9, 0.7]  # each <id>.json record carries it too
    (rejected,) = job.progress.rejected
    assert (rejected["seed"], rejected["reason"], rejected["style_prob"]) == (1, "off_style", 0.2)
    pa.Table.from_pylist(job.progress.rejected, schema=REJECTED_SCHEMA)  # rejected.parquet takes it
    summary = style_verdicts(config, judged, job.progress.accepted, job.progress.rejected)
    assert summary == {"classifier": judged.style_classifier_version, "min_style_prob": 0.5,
                       "off_style_rejected": 1, "mean_style_prob": {"irish_folk": 0.8}}
