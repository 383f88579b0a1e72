"""The path users take: `ray start --head`, then `ray job submit -- python -m pipelines.train ...`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicgen.models import load_artifact

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture
def head_node(tmp_path):
    """A one-node cluster on loopback, stopped afterwards (this test owns no other Ray cluster)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port, dashboard = _free_port(), _free_port()
    # Ray 2.60 turns on token authentication for local clusters when ~/.ray/auth_token exists;
    # say so explicitly, for the server and for the job client alike, and make sure the token exists
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    assert _ray("get-auth-token", "--generate", env=env).returncode == 0
    started = _ray("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={dashboard}", "--num-cpus=2", "--include-dashboard=true",
                   "--disable-usage-stats", env=env)
    assert started.returncode == 0, started.stderr
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 60
    while _ray("job", "list", "--address", address, env=env).returncode != 0:
        assert time.time() < deadline, "the job server did not come up"
        time.sleep(2)
    yield address, env
    _ray("stop", "--force", env=env)


def test_ray_job_submit_preprocess_then_train(head_node, real_corpus, tmp_path):
    address, env = head_node
    shards, runs = tmp_path / "shards", tmp_path / "runs"
    runtime_env = json.dumps({"excludes": [".venv", ".git", "artifacts", "*.egg-info", ".pytest_cache", ".hypothesis"]})

    def submit(*entrypoint: str) -> str:
        for _ in range(20):  # the job agent can come up a little after the job server on a busy machine
            result = _ray("job", "submit", "--address", address, "--working-dir", str(REPO),
                          "--runtime-env-json", runtime_env, "--", sys.executable, *entrypoint, env=env, cwd=REPO)
            if "No available agent" not in result.stderr:
                break
            time.sleep(3)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "succeeded" in result.stdout
        return result.stdout

    submit("-m", "pipelines.preprocess", "--input", str(real_corpus), "--output", str(shards),
           "--style-from", str(real_corpus / "corpus.csv"), "--val-fraction", "0.25")
    out = submit("-m", "pipelines.train", "--data", str(shards), "--name", "submitted", "--storage", str(runs),
                 "--max-steps", "4", "--eval-every-steps", "4", "--batch-size", "8", "--max-len", "64",
                 "-m", "hidden_size=32", "-m", "num_layers=1", "-m", "embed_dim=32")
    assert "validation bits/token" in out
    model, meta = load_artifact(str(runs / "submitted" / "model"))
    assert meta.model == "lstm" and meta.training["steps"] == 4
    shutil.rmtree(runs)
