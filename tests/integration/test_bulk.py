"""The bulk catalog job on a real local Ray cluster: N unique melodies per style, resume after SIGKILL,
the copy filter, and an S3 catalog."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pretty_midi
import pyarrow.parquet as pq
import pytest

from musicgen import storage
from musicgen.catalog.bulk import PRECISION_KEY, run_bulk
from musicgen.catalog.generate import melody_id
from musicgen.config import BulkConfig, PreprocessConfig
from musicgen.data.preprocess import run_preprocess
from musicgen.data.shards import read_split
from musicgen.music.export import wav_available
from musicgen.sampling import GeneratedMelody, MelodyGenerator
from musicgen.tokenizers import tokenizer_from_dict
from tests.conftest import save_tiny_artifact

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
STYLES = ("bach_chorale", "irish_folk")
N = 6
# the settings every catalog here shares, so the resumed one can be compared with the uninterrupted one
SETTINGS = {"per_style": N, "styles": STYLES, "batch_size": 2, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def shards(ray_local, real_corpus, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shards")
    run_preprocess(PreprocessConfig(inputs=(str(real_corpus),), output=str(out),
                                    style_from=str(real_corpus / "corpus.csv"), val_fraction=0.25, test_fraction=0.1))
    return str(out)


@pytest.fixture(scope="module")
def model(shards, tmp_path_factory) -> str:
    return save_tiny_artifact(str(tmp_path_factory.mktemp("tiny") / "model"), data=shards)


@pytest.fixture(scope="module")
def catalog(model, tmp_path_factory) -> tuple[str, dict]:
    """An uninterrupted run."""
    out = str(tmp_path_factory.mktemp("catalog"))
    return out, run_bulk(BulkConfig(model=model, out=out, **SETTINGS))


def catalog_files(out: str) -> set[str]:
    return {str(p.relative_to(out)) for style in STYLES if (Path(out) / style).exists()
            for p in (Path(out) / style).iterdir()}


def test_catalog_holds_n_unique_melodies_per_style_matching_its_manifest(catalog, model):
    out, summary = catalog
    manifest = pq.read_table(f"{out}/manifest.parquet").to_pylist()
    assert summary["accepted"] == dict.fromkeys(STYLES, N) and len(manifest) == N * len(STYLES)
    assert len({r["id"] for r in manifest}) == len(manifest)
    version = MelodyGenerator.from_artifact(model, device="cpu").model_version
    for style in STYLES:
        rows = [r for r in manifest if r["style"] == style]
        assert len(rows) == N and len({r["fingerprint"] for r in rows}) == N
        assert [r["seed"] for r in rows] == sorted(r["seed"] for r in rows)
    expected = set()
    for r in manifest:
        assert r["id"] == melody_id(version, r["style"], r["seed"]) and r["model_version"] == version
        assert r["longest_shared_run"] < r["copy_threshold"] == 16
        midi = pretty_midi.PrettyMIDI(f"{out}/{r['mid_path']}")
        assert len(midi.instruments[0].notes) == r["n_notes"] >= 8
        assert (Path(out) / r["abc_path"]).read_text().startswith("%abc-2.1")
        assert storage.read_json(f"{out}/{r['style']}/{r['id']}.json")["id"] == r["id"]
        expected |= {r["mid_path"], r["abc_path"], f"{r['style']}/{r['id']}.json"}
    assert catalog_files(out) == expected  # nothing else in the style folders
    choice = summary["precision_choice"]  # auto: timed on the driver at the job's batch size, on one thread
    assert (choice["precision"], choice["batch_sizes"], choice["threads"]) == (summary["precision"], [2], 1)
    assert {"fp32", "int8"} <= set(choice["ms_per_step"])
    assert {r["precision"] for r in manifest} == {choice["precision"]}
    assert json.loads(pq.read_schema(f"{out}/manifest.parquet").metadata[PRECISION_KEY.encode()]) == choice
    rejected = pq.read_table(f"{out}/rejected.parquet").to_pylist()
    assert sum(summary["rejected"].values()) == len(rejected)
    assert not {r["id"] for r in rejected} & {r["id"] for r in manifest}


def test_rerun_after_sigkill_finishes_the_same_catalog(catalog, model, ray_local, tmp_path):
    out = str(tmp_path / "resumed")
    command = [sys.executable, "-m", "pipelines.bulk_generate", "--model", model, "--out", out,
               "--per-style", str(N), "--styles", *STYLES, "--batch-size", "2"]
    # join the test's cluster, so killing the driver kills neither the cluster nor the other tests
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}

    # the driver SIGKILLs itself while writing its 6th melody (after checkpoints), leaving it partial
    killed = subprocess.run([*command, "--inject-kill-after", "5", "--checkpoint-every", "2"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    written = catalog_files(out)
    assert 0 < sum(f.endswith(".json") for f in written) < N * len(STYLES)
    assert {f[: -len(".mid")] for f in written if f.endswith(".mid")} - {f[:-5] for f in written if f.endswith(".json")}
    assert Path(out, "progress.json").exists() and not Path(out, "manifest.parquet").exists()
    Path(out, STYLES[0], "0123456789abcdef.mid.tmp-4242").write_bytes(b"MThd")  # what a kill mid-write leaves

    rerun = subprocess.run([*command, "--checkpoint-every", "2"], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = storage.read_json(f"{out}/summary.json")
    assert summary["accepted_before"] > 0 and summary["accepted_before"] + summary["accepted_this_run"] == 2 * N
    assert summary["stray_files_removed"] >= 1

    reference, _ = catalog
    assert catalog_files(out) == catalog_files(reference)  # same ids, nothing partial or left over
    for name in catalog_files(out):
        assert Path(out, name).read_bytes() == Path(reference, name).read_bytes(), name
    for table in ("manifest.parquet", "rejected.parquet"):
        assert pq.read_table(f"{out}/{table}").to_pylist() == pq.read_table(f"{reference}/{table}").to_pylist()


def test_a_short_later_round_is_sampled_on_the_driver_as_an_actor_samples_it(model, tmp_path, monkeypatch):
    """A second round for the few melodies a style still lacks would start a new actor pool (seconds); it
    runs on the driver instead, through the same generator on one thread: the same catalog, byte for byte."""
    import musicgen.catalog.bulk as bulk

    settings = {**SETTINGS, "oversample": 1.0, "min_notes": 24}  # some too short, so one round is not enough
    here = []
    sampled_here = bulk.Job.sampled_here
    monkeypatch.setattr(bulk.Job, "sampled_here", lambda job, *a: here.append(job.progress.round) or
                        sampled_here(job, *a))
    local = run_bulk(BulkConfig(model=model, out=str(tmp_path / "local"), **settings))
    assert local["rounds"] >= 2 and here and min(here) >= 2, (local["rounds"], here)
    monkeypatch.setattr(bulk, "LOCAL_ROUND", 0)  # every round through the actor pool
    pooled = run_bulk(BulkConfig(model=model, out=str(tmp_path / "pooled"), **settings))
    assert pooled["rounds"] == local["rounds"] and pooled["accepted"] == local["accepted"]
    a, b = str(tmp_path / "local"), str(tmp_path / "pooled")
    assert catalog_files(a) == catalog_files(b)
    for name in catalog_files(a):
        assert Path(a, name).read_bytes() == Path(b, name).read_bytes(), name
    for table in ("manifest.parquet", "rejected.parquet"):
        assert pq.read_table(f"{a}/{table}").to_pylist() == pq.read_table(f"{b}/{table}").to_pylist()


class PlantingGenerator:
    """The real generator, except that one (style, seed) comes out as a melody of the corpus."""

    def __init__(self, inner: MelodyGenerator, planted, style: str, seed: int):
        self.inner, self.planted, self.style, self.seed = inner, planted, style, seed

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, requests):
        return [GeneratedMelody(self.planted, g.request, g.tokens)
                if (g.request.style, g.request.seed) == (self.style, self.seed) else g
                for g in self.inner.generate(requests)]


def corpus_melody(shards: str):
    """The longest training melody of the corpus, and its id."""
    table = read_split(shards, "train", ("melody_id", "tokens"))
    tokenizer = tokenizer_from_dict(storage.read_json(f"{shards}/vocab.json"))
    melodies = [(tokenizer.decode(t)[0], i) for t, i in zip(table.column("tokens").to_pylist(),
                                                            table.column("melody_id").to_pylist())]
    return max(melodies, key=lambda m: len(m[0].notes))


def load_planting(uri: str, device: str = "auto", precision: str = "auto", *, shards: str, style: str,
                  seed: int) -> PlantingGenerator:
    return PlantingGenerator(MelodyGenerator.from_artifact(uri, device=device, precision=precision),
                             corpus_melody(shards)[0], style, seed)


def test_a_planted_copy_of_a_corpus_melody_is_rejected(model, shards, tmp_path):
    planted, planted_id = corpus_melody(shards)
    loader = functools.partial(load_planting, shards=shards, style="irish_folk", seed=2)
    summary = run_bulk(BulkConfig(model=model, out=str(tmp_path), **{**SETTINGS, "per_style": 4}), loader=loader)

    rejected = pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    copy = next(r for r in rejected if (r["style"], r["seed"]) == ("irish_folk", 2))
    assert copy["reason"] == "copies_training" and summary["rejected"]["copies_training"] >= 1
    assert copy["longest_run"] == len(planted.notes) - 1 > 16
    assert copy["nearest_id"] == planted_id
    manifest = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    assert copy["id"] not in {r["id"] for r in manifest} and summary["accepted"] == dict.fromkeys(STYLES, 4)
    assert not list(tmp_path.glob(f"*/{copy['id']}.*"))


def test_catalog_on_s3(model, s3_bucket):
    out = f"s3://{s3_bucket}/catalog"
    formats = ("mid", "abc", "wav") if wav_available() else ("mid", "abc")  # wav needs fluidsynth and a soundfont
    summary = run_bulk(BulkConfig(model=model, out=out, formats=formats, **{**SETTINGS, "per_style": 2}))
    assert summary["accepted"] == dict.fromkeys(STYLES, 2)
    manifest = pq.read_table(storage.resolve(f"{out}/manifest.parquet")[1],
                             filesystem=storage.resolve(out)[0]).to_pylist()
    files = storage.list_files(out)
    parts = [f for f in files if "/catalog/progress/" in f]
    assert parts and all(f.endswith(".json") for f in parts)  # the decided melodies' records, a part per save
    # each melody's files and <id>.json; manifest, rejected, summary and progress
    assert len(files) - len(parts) == (len(formats) + 1) * len(manifest) + 4
    for r in manifest:
        assert storage.read_bytes(f"{out}/{r['mid_path']}")[:4] == b"MThd"
        if "wav" in formats:
            assert storage.read_bytes(f"{out}/{r['wav_path']}")[:4] == b"RIFF"


def test_bulk_help():
    out = subprocess.run([sys.executable, "-m", "pipelines.bulk_generate", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert "--per-style" in out and "--copy-threshold" in out


def test_a_catalog_with_auto_forms_draws_each_style_form_and_records_it(model, tmp_path):
    """``form: auto``: each melody takes a form its style's training melodies have (the tiny model's
    shards hold ABC Irish tunes with repeats), sampled section by section; the manifest records it and
    a formed melody has its own id."""
    from musicgen.catalog.generate import row_request, shape_of
    from musicgen.music.form import pickup_bars
    from musicgen.music.midi import read_midi
    from musicgen.sampling.form import resolve_form

    generator = MelodyGenerator.from_artifact(model, device="cpu")
    assert any(label != "none" for label in generator.meta.form_mix("irish_folk").forms)
    own = {"bach_chorale": "AB:2"}  # a style given its own form in place of auto
    summary = run_bulk(BulkConfig(model=model, out=str(tmp_path), form="auto", style_forms=own,
                                  **{**SETTINGS, "per_style": 4}))
    assert summary["accepted"] == dict.fromkeys(STYLES, 4)
    manifest = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    formed = 0
    for r in manifest:
        form, section_bars = (("AB", 2) if r["style"] == "bach_chorale" else
                              resolve_form("auto", None, r["seed"], generator.meta.form_mix(r["style"]), 64))
        assert (r["form"], r["section_bars"]) == (form, section_bars)
        melody = read_midi((tmp_path / r["mid_path"]).read_bytes())
        # sampled section by section (an untrained model's new sections may sound alike, so only
        # the sections' places are checked here; test_form checks a trained model keeps its forms)
        pickup = pickup_bars(melody, section_bars)  # a pickup bar, where it opens with one, before whole sections
        assert r["bars"] == len(form) * section_bars + pickup == melody.n_bars
        assert melody.sections == tuple((i * section_bars + pickup if i else 0) * melody.bar_ticks
                                        for i in range(len(form)))
        request = row_request(generator, r["style"], r["seed"], {"form": "auto", "section_bars": 8, "style_forms": own})
        assert r["id"] == melody_id(generator.model_version, r["style"], r["seed"], shape_of(request))
        formed += len(form) > 1
    assert formed
    with pytest.raises(ValueError, match="starts with A"):
        run_bulk(BulkConfig(model=model, out=str(tmp_path / "bad"), form="BA", **SETTINGS))
