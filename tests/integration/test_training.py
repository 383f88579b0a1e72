"""Training with Ray Train on a real local cluster: artifact, resume by rerun, injected worker failure."""

from __future__ import annotations

import json
import os

import pytest
import torch

from musicgen import storage
from musicgen.cli import main
from musicgen.config import PreprocessConfig, TrainConfig
from musicgen.data.preprocess import run_preprocess
from musicgen.models import load_artifact
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.training.loop import read_metrics
from musicgen.training.trainer import run_training

pytestmark = pytest.mark.integration
TINY_LSTM = {"embed_dim": 32, "hidden_size": 48, "num_layers": 1, "style_dim": 8}


@pytest.fixture(scope="module")
def shards(ray_local, real_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    stats = run_preprocess(
        PreprocessConfig(inputs=(str(real_corpus),), output=str(out), style_from=str(real_corpus / "corpus.csv"),
                         val_fraction=0.25, test_fraction=0.1)
    )
    assert stats["melodies"] > 20
    return str(out)


def _config(shards, storage_dir, **overrides) -> TrainConfig:
    values = dict(data=shards, name="run", storage=str(storage_dir), model="lstm", model_config=TINY_LSTM,
                  batch_size=8, max_len=64, max_steps=6, eval_every_steps=2, lr=3e-3, max_failures=1)
    values.update(overrides)
    return TrainConfig(**values)


def test_injected_failure_restarts_from_checkpoint_then_rerun_resumes(shards, tmp_path):
    summary = run_training(_config(shards, tmp_path, inject_failure_at_step=3))
    run = str(tmp_path / "run")
    assert storage.exists(f"{run}/injected_failure"), "the failure was injected"
    history = read_metrics(run)
    assert [m["step"] for m in history] == [2, 4, 6]
    # after the crash at step 3 the worker restarted from the step-2 checkpoint, not from zero
    assert history[0].get("resumed_from_step") is None
    assert history[1]["resumed_from_step"] == 2 and history[2]["resumed_from_step"] == 2
    assert summary["steps"] == 6 and summary["best_step"] in (2, 4, 6)  # best by validation loss
    for key in ("train_loss", "val_loss", "val_bits_per_token", "tokens_per_second", "ngram_bits_per_token"):
        assert key in history[-1]
    assert any(k.startswith("val_bits_per_token/") for k in history[-1])
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    baseline = json.loads((tmp_path / "run" / "ngram_baseline.json").read_text())
    assert baseline["bits_per_token"]["all"] == history[-1]["ngram_bits_per_token"]

    # rerunning the same command with more steps resumes from the latest checkpoint (step 6)
    run_training(_config(shards, tmp_path, max_steps=8))
    history = read_metrics(run)
    assert [m["step"] for m in history] == [2, 4, 6, 8]
    assert history[-1]["resumed_from_step"] == 6


def test_a_time_budget_fits_the_steps_by_the_runs_own_pace_and_a_restart_keeps_them(shards, tmp_path):
    # no step fits a millisecond: the run keeps the least a budget allows (50 of its 60), decided after 25
    # steps; a restart from the step-30 checkpoint keeps 50 (timing again would end the run at step 55);
    # the split streamed from Parquet each epoch, where the other runs here read it once (cached_tokens)
    summary = run_training(_config(shards, tmp_path, max_steps=60, time_budget_s=0.001, epochs=1000,
                                   eval_every_steps=10, inject_failure_at_step=33, cached_tokens=0))
    history = read_metrics(str(tmp_path / "run"))
    assert [m["step"] for m in history] == [10, 20, 30, 40, 50]
    assert [m["max_steps"] for m in history] == [60, 60, 50, 50, 50]
    assert history[-1]["resumed_from_step"] == 30 and summary["steps"] == 50


def test_model_artifact_is_self_contained_and_cli_prints_the_baseline(shards, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, as users type them (the workers run elsewhere)
    code = main(["train", "--data", os.path.relpath(shards), "--name", "cli", "--storage", ".", "--max-steps", "4",
                 "--eval-every-steps", "4", "--batch-size", "8", "--max-len", "64",
                 *[f"-m{k}={v}" for k, v in TINY_LSTM.items()]])
    assert code == 0
    out = capsys.readouterr().out
    assert "5-gram KN" in out and "bach_chorale" in out
    model, meta = load_artifact(str(tmp_path / "cli" / "model"))
    tokenizer = tokenizer_from_dict(meta.tokenizer)
    assert meta.styles == tokenizer.styles and meta.data_stats["melodies"] > 0
    assert meta.training["ngram_bits_per_token"]["all"] > 0
    assert meta.config["hidden_size"] == 48
    tokens = torch.tensor([[1, tokenizer.style_token("irish_folk"), 3]])
    logits, _ = model(tokens, torch.tensor([tokenizer.styles.index("irish_folk")]))
    assert logits.shape == (1, 3, len(tokenizer))
    assert json.loads((tmp_path / "cli" / "model" / "model.json").read_text())["model"] == "lstm"
    # the style classifier rides along, fitted on the training split, and the loader reads it
    assert meta.companions == {"style_classifier": "style_classifier.json"}
    fitted = meta.training["style_classifier"]
    assert len(fitted["styles"]) >= 2 and set(fitted["styles"]) <= set(meta.styles) and fitted["seconds"] > 0
    from musicgen.sampling import MelodyGenerator, SampleRequest

    generator = MelodyGenerator.from_artifact(str(tmp_path / "cli" / "model"), device="cpu", precision="fp32")
    (melody,) = generator.generate([SampleRequest("irish_folk", 0, bars=4)])
    prob, top = generator.verdict(melody.melody, "irish_folk")
    assert 0 <= prob <= 1 and top in meta.styles


@pytest.mark.parametrize("name, options", [
    ("transformer", {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 80}),
    ("gan", {"embed_dim": 32, "hidden_size": 32, "num_layers": 1, "d_channels": 16, "gen_len": 24,
             "adversarial_after_steps": 2}),
])
def test_other_models_train_through_the_same_path(shards, tmp_path, name, options):
    summary = run_training(_config(shards, tmp_path, name=name, model=name, model_config=options, max_steps=4,
                                   eval_every_steps=4))
    history = read_metrics(str(tmp_path / name))
    assert summary["model"] == name and history[-1]["step"] == 4
    if name == "gan":
        assert {"d_loss", "g_loss", "sample_distinct_4grams"} <= set(history[-1])  # the adversarial phase ran
    load_artifact(summary["artifact"])


def test_fine_tuning_adds_style_dropout_to_a_trained_model(shards, tmp_path):
    source = run_training(_config(shards, tmp_path, name="base", max_steps=2, eval_every_steps=2))["artifact"]
    base, _ = load_artifact(source)
    with pytest.raises(ValueError, match="is a lstm model, not transformer"):
        run_training(_config(shards, tmp_path, name="wrong", model="transformer", model_config={}, init_from=source))
    # model_config only overrides: the sizes come from the artifact
    summary = run_training(_config(shards, tmp_path, name="tuned", model_config={"style_dropout": 0.5}, max_steps=2,
                                   eval_every_steps=2, init_from=source, lr=1e-9))
    tuned, meta = load_artifact(summary["artifact"])
    assert meta.config["style_dropout"] == 0.5 and meta.config["hidden_size"] == TINY_LSTM["hidden_size"]
    assert tuned.style_emb.num_embeddings == base.style_emb.num_embeddings + 1
    # two steps at a negligible learning rate: the weights are the source's, not a fresh initialisation
    assert torch.allclose(tuned.lstm.weight_hh_l0, base.lstm.weight_hh_l0, atol=1e-5)
    assert torch.allclose(tuned.style_emb.weight[:-1], base.style_emb.weight, atol=1e-5)


def test_guidance_is_distilled_into_a_student_that_samples_in_one_pass(shards, tmp_path):
    """musicgen train --init-from TEACHER --distill-guidance 2 through Ray Train: the student's artifact
    records the weight, samples at it by default, and its validation bits are scored at guidance 1."""
    from musicgen.sampling import MelodyGenerator, SampleRequest

    plain = run_training(_config(shards, tmp_path, name="plain", max_steps=2, eval_every_steps=2))["artifact"]
    with pytest.raises(ValueError, match="cannot be guided"):
        run_training(_config(shards, tmp_path, name="refused", init_from=plain, distill_guidance=2.0))
    teacher = run_training(_config(shards, tmp_path, name="teacher", model_config={**TINY_LSTM, "style_dropout": 0.2},
                                   max_steps=4, eval_every_steps=4))["artifact"]
    assert main(["train", "--data", shards, "--name", "student", "--storage", str(tmp_path), "--init-from", teacher,
                 "--distill-guidance", "2", "--max-steps", "4", "--eval-every-steps", "2", "--batch-size", "8",
                 "--max-len", "64", "--num-cpus", "2"]) == 0
    student, meta = load_artifact(str(tmp_path / "student" / "model"))
    assert meta.config["baked_guidance"] == 2.0 and meta.config["hidden_size"] == TINY_LSTM["hidden_size"]
    history = read_metrics(str(tmp_path / "student"))
    assert [m["step"] for m in history] == [2, 4] and all(m["train_loss"] >= 0 for m in history)
    assert 0 < history[-1]["val_bits_per_token"] < 12
    out = MelodyGenerator.from_artifact(str(tmp_path / "student" / "model")).generate(
        [SampleRequest(style=meta.styles[0], seed=1, bars=2)])[0]
    assert out.request.guidance == 2.0 and out.melody.n_bars >= 2


def test_fine_tuning_on_a_corpus_of_new_styles_keeps_the_old_ones(shards, real_corpus, tmp_path):
    source = run_training(_config(shards, tmp_path, name="base", model_config={**TINY_LSTM, "style_dropout": 0.2},
                                  max_steps=2, eval_every_steps=2))["artifact"]
    base, base_meta = load_artifact(source)
    # a studio's own corpus: MIDI files in a folder named after a style the model does not know
    mine = tmp_path / "mine" / "studio_theme"
    mine.mkdir(parents=True)
    for path in sorted(real_corpus.rglob("*.mid"))[:12]:
        (mine / path.name).write_bytes(path.read_bytes())
    new_shards = tmp_path / "mine_shards"
    run_preprocess(PreprocessConfig(inputs=(str(tmp_path / "mine"),), output=str(new_shards), val_fraction=0.3,
                                    test_fraction=0.0))
    summary = run_training(_config(str(new_shards), tmp_path, name="tuned", model_config={}, max_steps=2,
                                   eval_every_steps=2, init_from=source, lr=1e-9))
    tuned, meta = load_artifact(summary["artifact"])
    old = base_meta.tokenizer
    tokenizer = tokenizer_from_dict(meta.tokenizer)
    assert tokenizer.styles == (*old["styles"], "studio_theme")
    assert tokenizer.vocab[: len(old["vocab"])] == old["vocab"]  # the old ids keep their meaning
    n_old = len(old["vocab"])
    assert torch.allclose(tuned.tok_emb.weight[:n_old], base.tok_emb.weight, atol=1e-5)
    assert torch.allclose(tuned.head.bias[:n_old], base.head.bias, atol=1e-5)
    n_styles = len(old["styles"])
    assert torch.allclose(tuned.style_emb.weight[:n_styles], base.style_emb.weight[:n_styles], atol=1e-5)
    assert torch.allclose(tuned.style_emb.weight[-1], base.style_emb.weight[-1], atol=1e-5)  # "no style" stays last
    assert tuned.style_emb.num_embeddings == base.style_emb.num_embeddings + 1
    assert summary["val_bits_per_token"]["all"] > 0

    from musicgen.sampling.generator import MelodyGenerator
    from musicgen.sampling.sampler import SampleRequest

    generator = MelodyGenerator.from_artifact(summary["artifact"], device="cpu")
    for style in ("studio_theme", old["styles"][0]):
        (melody,) = generator.generate([SampleRequest(style=style, seed=1, bars=4)])
        assert melody.melody.notes


def test_the_shipped_model_fine_tunes_on_a_folder_of_new_style_midi_files(real_corpus, tmp_path, capsys):
    mine = tmp_path / "midi" / "studio_theme"
    mine.mkdir(parents=True)
    for path in sorted(real_corpus.rglob("*.mid"))[:12]:
        (mine / path.name).write_bytes(path.read_bytes())
    shards = tmp_path / "shards"
    assert main(["preprocess", "--input", str(tmp_path / "midi"), "--output", str(shards)]) == 0
    # events shards for a keyed model: a clear error that says how to preprocess
    assert main(["train", "--data", str(shards), "--init-from", "pretrained", "--name", "x", "--storage",
                 str(tmp_path / "runs")]) == 2
    assert "--tokenizer keyed" in capsys.readouterr().err
    assert main(["preprocess", "--input", str(tmp_path / "midi"), "--output", str(shards), "--tokenizer", "keyed"]) == 0
    # twelve files leave no validation melodies at the default 5 %: a clear error, then a larger share
    assert main(["train", "--data", str(shards), "--init-from", "pretrained", "--name", "x", "--storage",
                 str(tmp_path / "runs")]) == 2
    assert "--val-fraction" in capsys.readouterr().err
    assert main(["preprocess", "--input", str(tmp_path / "midi"), "--output", str(shards),
                 "--val-fraction", "0.3", "--tokenizer", "keyed"]) == 0
    assert main(["train", "--data", str(shards), "--init-from", "pretrained", "--name", "mine", "--storage",
                 str(tmp_path / "runs"), "--max-steps", "2", "--eval-every-steps", "2", "--batch-size", "4",
                 "--max-len", "64", "--lr", "1e-5"]) == 0
    _, meta = load_artifact(str(tmp_path / "runs" / "mine" / "model"))
    _, shipped = load_artifact("pretrained")
    assert meta.styles == (*shipped.styles, "studio_theme")
    assert meta.config["hidden_size"] == shipped.config["hidden_size"]
    assert "studio_theme" in capsys.readouterr().out
