"""What a person reads (issue #23 item 1): real commands in a subprocess print our own progress and
summaries plus one "Ray's logs: <folder>" line; Ray's log lines and the workers' output go to that
folder, and to the terminal with --verbose; a failing worker's error still reaches the terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TINY = ["-m", "embed_dim=32", "-m", "hidden_size=48", "-m", "num_layers=1", "--batch-size", "8", "--max-len", "64",
        "--max-steps", "4", "--eval-every-steps", "2", "--num-cpus", "2"]
RAY_LINES = re.compile(r"TrainingReport\(|\(RayTrainWorker pid=|\(TrainController pid=|\tINFO |\tWARNING ")


def musicgen(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local cluster of its own
    return subprocess.run([sys.executable, "-m", "musicgen.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def log_folder(output: str) -> Path:
    folders = re.findall(r"^Ray's logs: (\S+)", output, flags=re.M)
    assert len(folders) == 1, output
    return Path(folders[0])


@pytest.fixture(scope="module")
def shards(real_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    done = musicgen("preprocess", "--input", str(real_corpus), "--output", str(out), "--style-from",
                    str(real_corpus / "corpus.csv"), "--val-fraction", "0.25", "--test-fraction", "0.1")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert not RAY_LINES.search(output), output  # Ray Data's execution plan and progress logs went to the file
    assert "files read in" in done.stdout
    assert "Running Dataset" in (log_folder(output) / "ray-data" / "ray-data.log").read_text()
    return out


def test_train_prints_our_lines_and_sends_rays_to_the_log_folder(shards, tmp_path):
    done = musicgen("train", "--data", str(shards), "--name", "quiet", "--storage", str(tmp_path), *TINY)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert not RAY_LINES.search(output), output
    assert re.search(r"^step 2/4 .*val bits/token", done.stdout, flags=re.M)  # our progress, one line a report
    assert "lstm trained for 4 steps" in done.stdout
    folder = log_folder(output)
    workers = "".join(p.read_text(errors="replace") for p in folder.glob("worker-*.*"))
    assert "TrainingReport(" in workers  # the workers' output is kept, in Ray's files
    assert "Started a local Ray instance" in (folder / "musicgen-driver.log").read_text()


def test_verbose_train_shows_rays_lines(shards, tmp_path):
    done = musicgen("-v", "train", "--data", str(shards), "--name", "loud", "--storage", str(tmp_path), *TINY)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "TrainingReport(" in output and "(RayTrainWorker pid=" in output
    assert "Ray's logs:" not in output


def test_a_failing_worker_still_shows_its_error(shards, tmp_path):
    config = tmp_path / "fail.yaml"
    config.write_text("inject_failure_at_step: 2\nmax_failures: 0\n")
    done = musicgen("train", "--data", str(shards), "--name", "fail", "--storage", str(tmp_path),
                    "--config", str(config), *TINY)
    assert done.returncode != 0
    assert "injected worker failure at step 2" in done.stderr
    assert "Ray's logs:" in done.stderr


def test_a_bad_input_still_shows_its_error(tmp_path):
    done = musicgen("bulk", "--model", str(tmp_path / "no-such-model"), "--per-style", "1", "--out",
                    str(tmp_path / "out"), "--num-cpus", "2")
    assert done.returncode == 2
    assert "error:" in done.stderr and "no-such-model" in done.stderr
