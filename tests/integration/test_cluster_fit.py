"""Never wait forever: on a 2-CPU cluster every command that asks for more than it has fails within
seconds, naming what is missing, instead of queueing for resources that never come.

One 2-CPU local cluster for the module (``ray_local``); the last test starts the ``musicgen``
command itself, as a user would, and checks its exit code 2.
"""

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


def test_preprocess_and_evaluate_need_one_cpu_which_two_have(ray_local):
    require({"CPU": 1}, "preprocessing")  # what run_preprocess and the catalog judges ask first
    with pytest.raises(ClusterTooSmall, match=r"needs 3 CPU \(the cluster has 2\), 1 GPU \(the cluster has 0\)"):
        require({"CPU": 3, "GPU": 1}, "x", wait_s=0)


def _musicgen(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "musicgen.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    return done, time.monotonic() - started


def test_cli_refuses_too_few_cpus_before_starting_ray(tmp_path):
    done, seconds = _musicgen("train", "--data", str(tmp_path), "--name", "n", "--storage", str(tmp_path),
                              "--workers", "2", "--num-cpus", "2")
    assert done.returncode == 2, done.stderr
    assert "needs 3 CPU(s), but --num-cpus is 2" in done.stderr and "Traceback" not in done.stderr
    assert seconds < 30  # the interpreter and imports; no Ray cluster was started
