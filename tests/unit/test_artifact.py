"""The typed model artifact (``ArtifactMeta``): checked when written and when read, the shipped model read
as it is; and the model config of ``musicgen train -m key=value`` checked on the driver (exit 2)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from musicgen import storage
from musicgen.cli import main
from musicgen.models import (
    META_FILE,
    ArtifactMeta,
    build_model,
    check_model_config,
    load_artifact,
    read_meta,
    save_artifact,
)
from musicgen.pretrained import pretrained_path, verify_checksums
from musicgen.tokenizers import make_tokenizer
from tests.conftest import STYLES, TINY_LSTM, save_tiny_artifact


def _tiny_lstm(tok, **config):
    return build_model("lstm", vocab_size=len(tok), n_styles=len(tok.styles), **{**TINY_LSTM, **config})


def test_the_shipped_model_is_read_as_it_is():
    folder = pretrained_path()
    raw = json.loads((folder / META_FILE).read_text())
    meta = read_meta("pretrained")
    assert meta.model == "lstm" and meta.styles == STYLES and meta.guidable
    assert meta.tokenizer["name"] == "keyed" and meta.run_name == "melody-lstm"
    assert meta.training["best_step"] == 1200 and meta.data_stats["melodies"] > 0
    assert meta.config["baked_guidance"] == 2.0 and meta.train_config["init_from"] == "melody-lstm"  # distilled
    assert meta.to_json() == raw  # nothing lost or added: the same metadata would be written back
    _, loaded = load_artifact("pretrained")
    assert loaded.weights_sha256 == hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    assert loaded.version == loaded.weights_sha256[:12]
    verify_checksums(folder)  # and its files are untouched


def test_written_as_before_and_read_back_typed(tmp_path):
    uri = save_tiny_artifact(str(tmp_path / "model"), data="shards")
    raw = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert set(raw) == {"format_version", "model", "config", "n_params", "torch_version", "extra"}
    assert set(raw["extra"]) == {"tokenizer", "styles", "train_config"}
    _, meta = load_artifact(uri)
    assert meta.styles == STYLES and meta.training_data == "shards" and meta.run_name == "tiny-lstm"
    assert not meta.guidable and meta.companions == {} and meta.step is None


def test_checked_when_written(tmp_path):
    tok = make_tokenizer("events", STYLES)
    uri = str(tmp_path / "model")
    with pytest.raises(ValueError, match="styles .* differ"):
        save_artifact(uri, _tiny_lstm(tok), "lstm", tokenizer=tok.to_dict(), styles=STYLES[:2])
    other = make_tokenizer("events", STYLES[:3])
    with pytest.raises(ValueError, match="token ids"):
        save_artifact(uri, _tiny_lstm(tok), "lstm", tokenizer=other.to_dict())
    with pytest.raises(ValueError, match="companion"):
        save_artifact(uri, _tiny_lstm(tok), "lstm", tokenizer=tok.to_dict(), companions={"reference": "../x"})
    with pytest.raises(TypeError):
        save_artifact(uri, _tiny_lstm(tok), "lstm", tokenizer=tok.to_dict(), val_loss=1.0)  # not a field
    assert not storage.exists(uri)  # nothing written by a refused save
    meta = save_artifact(uri, _tiny_lstm(tok, style_dropout=0.1), "lstm", tokenizer=tok.to_dict(), styles=STYLES,
                         companions={"style_classifier": "classifier.json"})
    assert meta.guidable and read_meta(uri).companions == {"style_classifier": "classifier.json"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(format_version=2), "artifact format 2"),
    (lambda m: m["config"].update(hidden_sise=3), "unknown lstm config fields: hidden_sise"),
    (lambda m: m["config"].update(n_styles=4), "4 styles"),
    (lambda m: m.pop("n_params"), "lacks n_params"),
    (lambda m: m["extra"].update(tokenizer={"name": "midi-like", "styles": []}), "midi-like"),
])
def test_checked_when_read(tmp_path, change, message):
    uri = save_tiny_artifact(str(tmp_path / "model"))
    raw = storage.read_json(storage.join(uri, META_FILE))
    change(raw)
    storage.write_json(storage.join(uri, META_FILE), raw)
    with pytest.raises((ValueError, KeyError), match=message):
        load_artifact(uri)


def test_a_model_json_its_model_cannot_be_built_from_is_a_clear_error_when_loaded(tmp_path):
    """A saved model's config is checked field by field when read; the constructor's own checks (here a
    width that does not split into heads) run when the model is built, with the artifact named."""
    uri = save_tiny_artifact(str(tmp_path / "model"), model="transformer", n_layer=1, n_head=2, n_embd=16)
    raw = storage.read_json(storage.join(uri, META_FILE))
    raw["config"]["n_head"] = 3
    storage.write_json(storage.join(uri, META_FILE), raw)
    assert read_meta(uri).config["n_head"] == 3
    with pytest.raises(ValueError, match=f"{uri}: .*n_embd must be a multiple of n_head"):
        load_artifact(uri)


def test_loading_and_sampling_a_model_does_not_import_torchs_compiler():
    """Building a model on the meta device to check a saved config imported torch._dynamo, seconds in every
    process that loads a model (each bulk actor, each Serve replica, every `musicgen generate`)."""
    import subprocess
    import sys

    code = ("import sys; from musicgen.sampling import MelodyGenerator, SampleRequest; "
            "g = MelodyGenerator.from_artifact('pretrained', device='cpu', precision='fp32'); "
            "g.generate([SampleRequest(g.styles[0], 0, bars=2)]); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_unknown_extra_keys_are_kept(tmp_path):
    uri = save_tiny_artifact(str(tmp_path / "model"))
    raw = storage.read_json(storage.join(uri, META_FILE))
    raw["extra"]["notes"] = {"by": "a later version"}
    meta = ArtifactMeta.from_json(raw)
    assert meta.other == {"notes": {"by": "a later version"}} and meta.to_json() == raw


def test_model_config_check():
    base = {"vocab_size": 40, "n_styles": 3}
    assert check_model_config("lstm", {**base, "hidden_size": 8}).hidden_size == 8
    assert check_model_config("gan", {**base, "d_kernel_sizes": [3, 5]}).d_kernel_sizes == (3, 5)  # YAML lists
    for bad, message in [({"hidden_sise": 8}, "unknown lstm config fields: hidden_sise"),
                         ({"hidden_size": "big"}, "hidden_size='big': expected int"),
                         ({"hidden_size": True}, "expected int"),
                         ({"dropout": 1.5}, "0 <= dropout < 1"),
                         ({"num_layers": 0}, "num_layers must be greater than zero")]:
        with pytest.raises(ValueError, match=message):
            check_model_config("lstm", {**base, **bad})
    with pytest.raises(ValueError, match="n_embd must be a multiple of n_head"):
        check_model_config("transformer", {**base, "n_embd": 30, "n_head": 4})
    with pytest.raises(ValueError, match="unknown model 'wavenet'"):
        check_model_config("wavenet", base)


@pytest.mark.parametrize(("options", "message"), [
    (["-m", "hidden_sise=64"], "unknown lstm config fields: hidden_sise"),
    (["-m", "hidden_size=big"], "hidden_size='big': expected int"),
    (["--model", "transformer", "-m", "n_embd=30", "-m", "n_head=4"], "n_embd must be a multiple of n_head"),
])
def test_a_bad_model_option_is_exit_2_before_ray_starts(tmp_path, monkeypatch, capsys, options, message):
    import musicgen.runtime

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a run whose model config is wrong")

    monkeypatch.setattr(musicgen.runtime, "init_ray", no_ray)
    storage.write_json(str(tmp_path / "shards" / "vocab.json"), make_tokenizer("events", STYLES).to_dict())
    code = main(["train", "--data", str(tmp_path / "shards"), "--name", "x", "--storage", str(tmp_path / "runs"),
                 *options])
    assert code == 2
    assert message in capsys.readouterr().err


def test_fine_tuning_options_are_checked_against_the_artifact_sizes(tmp_path):
    from musicgen.config import TrainConfig
    from musicgen.training.trainer import check_model_options

    storage.write_json(str(tmp_path / "vocab.json"), make_tokenizer("keyed", STYLES).to_dict())  # the shipped one's
    config = TrainConfig(data=str(tmp_path), name="x", storage=str(tmp_path), init_from="pretrained",
                         model_config={"style_dropout": 0.2})
    vocab, data_vocab = check_model_options(config)
    assert vocab == data_vocab
    with pytest.raises(ValueError, match="style_dropout"):
        check_model_options(TrainConfig(data=str(tmp_path), name="x", storage=str(tmp_path), init_from="pretrained",
                                        model_config={"style_dropout": 1.0}))
    assert torch.get_default_device().type == "cpu"  # the meta-device check left the default alone
