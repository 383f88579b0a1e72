"""The service's input contract, its settings, the rendering of a melody and the Serve config file."""

import base64
import importlib
import io
from pathlib import Path

import pretty_midi
import pytest
import yaml
from pydantic import ValidationError

from musicgen.cli import main
from musicgen.config import DEFAULT_TOP_P
from musicgen.serving.schemas import MelodyRequest, describe_errors, normalise_key, parse_time_signature
from tests.conftest import STYLES

REPO = Path(__file__).resolve().parents[2]


def error_of(**body) -> str:
    with pytest.raises(ValidationError) as exc:
        MelodyRequest(**body)
    return describe_errors(exc.value.errors())


def test_defaults_and_normalisation():
    r = MelodyRequest()
    assert (r.n, r.bars, r.temperature, r.top_k, r.top_p, r.seed, r.key, r.tempo, r.time_signature, r.form) == (
        1, None, 1.0, 0, DEFAULT_TOP_P, None, None, None, None, None)  # no tempo: the style's own; bars: see app
    assert r.format == ["json", "midi", "abc"]
    r = MelodyRequest(key="f# MINOR", time_signature=" 6 / 8 ", format=["abc", "abc", "midi"])
    assert (r.key, r.time_signature, r.format) == ("F# minor", "6/8", ["abc", "midi"])


@pytest.mark.parametrize("body, message", [
    ({"bars": 0}, "bars: Input should be greater than or equal to 1"),
    ({"bars": 65}, "bars: Input should be less than or equal to 64"),
    ({"n": 17}, "n: Input should be less than or equal to 16"),
    ({"top_p": 2}, "top_p: Input should be less than or equal to 1"),
    ({"top_p": 0}, "top_p: Input should be greater than 0"),
    ({"temperature": 0}, "temperature: Input should be greater than 0"),
    ({"top_k": 257}, "top_k: Input should be less than or equal to 256"),
    ({"tempo": 10}, "tempo: Input should be greater than or equal to 20"),
    ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"voices": 2}, "voices: Extra inputs are not permitted"),
    ({"key": "H major"}, "key: unknown key 'H major'"),
    ({"key": "D dorian"}, "key: key must look like 'D minor' or 'Bb major', got 'D dorian'"),
    ({"key": ""}, "key: key must look like"),
    ({"time_signature": "7/9"}, "time_signature: time signature '7/9' is not supported"),
    ({"time_signature": "six-eight"}, "time_signature: time_signature must look like '6/8'"),
    ({"format": []}, "format: List should have at least 1 item"),
    ({"format": ["wav"]}, "format.0: Input should be 'json', 'midi' or 'abc'"),
])
def test_invalid_requests_name_the_field(body, message):
    assert error_of(**body).startswith(message)


def test_several_errors_in_one_line():
    assert error_of(bars=0, top_p=2) == ("bars: Input should be greater than or equal to 1; "
                                         "top_p: Input should be less than or equal to 1")


def test_helpers():
    assert parse_time_signature("3/4") == (3, 4)
    assert normalise_key("eb") == "Eb major"
    with pytest.raises(ValueError):
        parse_time_signature("0/4")


# -- settings -----------------------------------------------------------------------------


def test_config_from_yaml_then_overrides(tmp_path):
    from musicgen.serving.app import Autoscaling, load_config

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({
        "model": "from-file", "port": 9000, "styles": ["irish_folk", "bach_chorale"],
        "autoscaling": {"max_replicas": 3, "downscale_delay_s": 5},
        "style_autoscaling": {"irish_folk": {"max_replicas": 6}},
        "max_batch_size": 4,
    }))
    config = load_config(str(path), model="from-flag", port=None)
    assert (config.model, config.port, config.host, config.styles) == ("from-flag", 9000, "127.0.0.1",
                                                                      ("irish_folk", "bach_chorale"))
    assert config.autoscaling_for("bach_chorale") == Autoscaling(max_replicas=3, downscale_delay_s=5)
    # a style's entry overrides only what it names; the rest comes from `autoscaling`
    assert config.autoscaling_for("irish_folk") == Autoscaling(max_replicas=6, downscale_delay_s=5)
    assert config.max_batch_size == 4 and config.auth_token_env == "MUSICGEN_API_TOKEN"


def test_the_shipped_model_is_served_when_none_is_named(tmp_path):
    from musicgen.serving.app import load_config

    assert load_config(None).model == "pretrained"
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"port": 9000}))
    assert load_config(str(path), model=None).model == "pretrained"


@pytest.mark.parametrize("values, message", [
    ({"model": "m", "replicas": 2}, "unknown ServeConfig settings: replicas"),
    ({"model": "m", "autoscaling": {"max": 2}}, "unknown Autoscaling settings: max"),
    ({"model": "m", "autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas <= max_replicas"),
    ({"model": "m", "max_batch_size": 64}, "max_ongoing_requests must be >= max_batch_size"),
    ({"model": "m", "styles": ["irish_folk"], "style_autoscaling": {"renaissance": {}}}, "not in styles: renaissance"),
])
def test_bad_settings_are_clear_errors(tmp_path, values, message):
    from musicgen.serving.app import load_config

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


def test_serve_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0 and "--model" in capsys.readouterr().out
    assert main(["serve", "--model", "no/such/model", "--port", "9000"]) == 2
    assert "no/such/model" in capsys.readouterr().err


def test_build_app_checks_styles(tiny_artifact):
    from musicgen.serving.app import ServeConfig, build_app

    with pytest.raises(ValueError, match="has no style jazz"):
        build_app(ServeConfig(model=tiny_artifact, styles=("irish_folk", "jazz")))


# -- rendering ---------------------------------------------------------------------------


def test_render_formats(tiny_artifact):
    from musicgen.sampling import MelodyGenerator, SampleRequest
    from musicgen.serving.app import render

    generator = MelodyGenerator.from_artifact(tiny_artifact, device="cpu")
    generated = generator.generate([SampleRequest("german_folk", seed=3, bars=4, time_signature=(3, 4),
                                                  key="G major", tempo=90)])[0]
    out = render(generated, ("json", "midi", "abc"), generator, batch_size=1)
    assert (out.style, out.seed, out.bars, out.key, out.tempo, out.time_signature) == (
        "german_folk", 3, 4, "G major", 90.0, "3/4")
    assert (out.model_id, out.model_name, out.model_version) == ("tiny-lstm", "lstm", generator.model_version)
    assert [(n.pitch, n.onset * 12, n.duration * 12) for n in out.notes] == [tuple(n) for n in generated.melody.notes]
    assert out.notes[-1].onset + out.notes[-1].duration == 12  # 4 bars of 3/4, in beats
    midi = pretty_midi.PrettyMIDI(io.BytesIO(base64.b64decode(out.midi_base64)))
    assert [n.pitch for n in midi.instruments[0].notes] == [n.pitch for n in out.notes]
    assert "M:3/4" in out.abc and "K:G" in out.abc and "T:german_folk 3" in out.abc
    only_abc = render(generated, ("abc",), generator, batch_size=1)
    assert only_abc.notes is None and only_abc.midi_base64 is None and only_abc.abc == out.abc


# -- the Serve config file ---------------------------------------------------------------


def test_cluster_serve_yaml_is_a_valid_serve_config(tiny_artifact):
    from ray.serve.schema import ServeDeploySchema

    from musicgen.serving.app import BATCH_SETTINGS, INGRESS_NAME, load_config, style_deployment_name
    from pipelines.serve_app import app_builder

    raw = yaml.safe_load((REPO / "cluster" / "serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    (app,) = schema.applications
    assert app.import_path == "pipelines.serve_app:app_builder"
    load_config(**app.args)  # every arg is a ServeConfig setting
    names = {d["name"] for d in raw["applications"][0]["deployments"]}
    assert names == {INGRESS_NAME} | {style_deployment_name(s) for s in STYLES}
    for deployment in raw["applications"][0]["deployments"]:
        assert set(deployment.get("user_config", BATCH_SETTINGS)) == set(BATCH_SETTINGS)
    # the import path resolves and builds the application (with the tiny model standing in)
    module, _, name = app.import_path.partition(":")
    assert getattr(importlib.import_module(module), name) is app_builder
    assert app_builder({**app.args, "model": tiny_artifact}).__class__.__name__ == "Application"


def test_app_builder_reads_a_settings_file(tmp_path, tiny_artifact):
    from ray.serve import Application

    from pipelines.serve_app import app_builder

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"styles": ["irish_folk"], "max_batch_size": 2}))
    assert isinstance(app_builder({"model": tiny_artifact, "config": str(settings)}), Application)
    with pytest.raises(ValueError, match="unknown ServeConfig settings: colour"):
        app_builder({"model": tiny_artifact, "colour": "blue"})
