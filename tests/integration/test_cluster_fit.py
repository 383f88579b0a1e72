"""Never wait forever: on a 2-CPU cluster every command that asks for more than it has fails within
seconds, naming what is missing, instead of queueing for resources that never come.

One 2-CPU local cluster for the module (``ray_local``), joined as ``ray job submit`` joins one
(train, bulk, serve, evaluate; preprocess's one CPU fits and it runs); the last test starts the
``musicgen`` command itself, as a user would, with a ``--num-cpus`` too small for what it asks
(train, preprocess, evaluate), and checks its exit code 2 before any Ray process starts.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from musicgen.config import BulkConfig, TrainConfig
from musicgen.runtime import ClusterTooSmall, require

pytestmark = pytest.mark.integration
FAST_S = 10  # "within seconds"; each of these takes well under one on the cluster


def test_train_with_more_workers_than_the_cluster_fits(ray_local, tmp_path):
    from musicgen.training.trainer import run_training

    started = time.monotonic()
    with pytest.raises(ClusterTooSmall, match=r"training with 2 worker\(s\).* needs 3 CPU \(the cluster has 2\)"):
        run_training(TrainConfig(data=str(tmp_path), name="n", storage=str(tmp_path), workers=2))
    assert time.monotonic() - started < FAST_S


def test_bulk_with_more_actors_than_cpus_or_a_gpu_it_lacks(ray_local, tiny_artifact, tmp_path):
    from musicgen.catalog.bulk import run_bulk

    for extra, missing in (({"actors": 3}, "3 CPU"), ({"use_gpu": True, "actors": 1}, "1 GPU")):
        started = time.monotonic()
        with pytest.raises(ClusterTooSmall, match=f"generator actor.* needs {missing} \\(the cluster has "):
            run_bulk(BulkConfig(model=tiny_artifact, out=str(tmp_path / "out"), per_style=1,
                                reference=str(tmp_path), precision="fp32", **extra))
        assert time.monotonic() - started < FAST_S


def test_serve_with_more_replicas_than_cpus(ray_local, tiny_artifact):
    from musicgen.serving.app import ServeConfig, run_server

    started = time.monotonic()
    with pytest.raises(ClusterTooSmall, match=r"serving 5 style\(s\).* needs 5.1 CPU \(the cluster has 2\)"):
        run_server(ServeConfig(model=tiny_artifact, replica_num_cpus=1.0))  # fails before Serve starts
    assert time.monotonic() - started < FAST_S


def test_evaluate_with_more_judges_than_cpus(ray_local, tmp_path, capsys):
    from musicgen.cli import main

    started = time.monotonic()  # the joined cluster is checked before the shards or the catalog are read
    code = main(["evaluate", "--generated", str(tmp_path / "catalog"), "--data", str(tmp_path / "shards"),
                 "--out", str(tmp_path / "report"), "--actors", "3"])
    assert code == 2
    assert "judging a catalog with 3 actor(s) (one CPU each; --actors sets how many) needs 3 CPU (the cluster " \
           "has 2)" in capsys.readouterr().err
    assert time.monotonic() - started < FAST_S


def test_preprocess_fits_a_two_cpu_cluster(ray_local, real_corpus, tmp_path, capsys):
    """preprocess asks for one CPU (its Ray Data tasks take one each): two run it."""
    from musicgen.cli import main

    code = main(["preprocess", "--input", str(real_corpus / "irish_folk"), "--output", str(tmp_path / "shards"),
                 "--min-notes", "1"])
    assert code == 0, capsys.readouterr().err
    with pytest.raises(ClusterTooSmall, match=r"needs 3 CPU \(the cluster has 2\), 1 GPU \(the cluster has 0\)"):
        require({"CPU": 3, "GPU": 1}, "x", wait_s=0)


def _musicgen(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "musicgen.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    return done, time.monotonic() - started


@pytest.mark.parametrize("command, message", [
    (["train", "--data", "{tmp}", "--name", "n", "--storage", "{tmp}", "--workers", "2", "--num-cpus", "2"],
     "training with 2 worker(s)"),
    (["preprocess", "--input", "{tmp}", "--output", "{tmp}/shards", "--num-cpus", "0"], "preprocessing"),
    (["evaluate", "--generated", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/report", "--actors", "3", "--num-cpus",
      "2"], "judging a catalog with 3 actor(s)"),
], ids=["train", "preprocess", "evaluate"])
def test_cli_refuses_too_few_cpus_before_starting_ray(command, message, tmp_path):
    from musicgen.tokenizers import make_tokenizer
    from tests.conftest import STYLES

    # train checks its -m options against the shards' vocabulary first, also before Ray starts
    (tmp_path / "vocab.json").write_text(json.dumps(make_tokenizer("events", STYLES).to_dict()))
    done, seconds = _musicgen(*(arg.replace("{tmp}", str(tmp_path)) for arg in command))
    assert done.returncode == 2, done.stderr
    wanted = {"train": 3, "preprocess": 1, "evaluate": 3}[command[0]]
    given = command[-1]
    assert message in done.stderr and f"needs {wanted} CPU(s), but --num-cpus is {given}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < 30  # the interpreter and imports; no Ray cluster was started
