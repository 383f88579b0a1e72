"""Every command explains itself, and settings reach the config objects."""

import re
import subprocess
import sys

import pytest
import yaml

from musicgen.cli import build_parser, bulk_config_from_args, main, train_config_from_args


@pytest.mark.parametrize("command", [[], ["corpus", "export"], ["preprocess"], ["train"], ["demo"], ["generate"],
                                     ["serve"], ["bulk"], ["evaluate"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: musicgen" in capsys.readouterr().out


@pytest.mark.parametrize("module, flag", [("pipelines.preprocess", "--output"), ("pipelines.train", "--storage"),
                                          ("pipelines.bulk_generate", "--out"), ("pipelines.evaluate", "--out")])
def test_job_entry_points_have_help(module, flag):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
    assert re.search(rf"^\s+{flag}\b", out, re.M), f"{module} --help does not list {flag}"


def test_evaluate_takes_models_or_a_catalog_not_both(capsys):
    assert main(["evaluate", "--data", "d", "--out", "o", "--model", "m", "--generated", "g"]) == 2
    assert "give --model (one or more) or --generated, not both" in capsys.readouterr().err


def test_model_defaults_to_the_shipped_one():
    parser = build_parser()
    for argv in (["generate", "--style", "irish_folk", "--out", "o"], ["bulk", "--out", "o", "--per-style", "1"]):
        assert parser.parse_args(argv).model == "pretrained"


def test_bulk_takes_a_form_per_style(capsys):
    args = build_parser().parse_args(["bulk", "--out", "o", "--per-style", "1", "--form", "auto", "--style-form",
                                      "irish_folk=AABB:8", "--style-form", "renaissance=none"])
    config = bulk_config_from_args(args)
    assert config.form == "auto" and config.style_forms == {"irish_folk": "AABB:8", "renaissance": "none"}
    plain = build_parser().parse_args(["bulk", "--out", "o", "--per-style", "1"])
    assert bulk_config_from_args(plain).style_forms == {}
    assert main(["bulk", "--out", "o", "--per-style", "1", "--style-form", "irish_folk"]) == 2
    assert "--style-form takes STYLE=FORM[:BARS]" in capsys.readouterr().err


def test_train_settings_come_from_yaml_then_flags(tmp_path):
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump({"model": "transformer", "lr": 0.01, "model_config": {"n_layer": 2}}))
    args = build_parser().parse_args(
        ["train", "--data", "d", "--name", "n", "--storage", "s", "--config", str(config_file), "--lr", "0.002",
         "-m", "n_embd=64", "--max-steps", "5"]
    )
    config = train_config_from_args(args)
    assert config.model == "transformer" and config.lr == 0.002 and config.max_steps == 5
    assert config.model_config == {"n_layer": 2, "n_embd": 64}
    budget = train_config_from_args(build_parser().parse_args(
        ["train", "--data", "d", "--name", "n", "--storage", "s", "--max-steps", "500", "--time-budget", "2.5"]))
    assert budget.time_budget_s == 150 and budget.max_steps == 500


def test_bad_settings_are_clear_errors(tmp_path, capsys):
    config_file = tmp_path / "train.yaml"
    config_file.write_text("learning_rate: 1\n")
    assert main(["train", "--data", "d", "--name", "n", "--storage", "s", "--config", str(config_file)]) == 2
    assert "unknown TrainConfig settings: learning_rate" in capsys.readouterr().err
    assert main(["train", "--data", "d", "--name", "n", "--storage", "s", "--time-budget", "5"]) == 2
    assert "a time budget needs --max-steps" in capsys.readouterr().err
