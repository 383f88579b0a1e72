"""Clean stops: SIGTERM to a real ``musicgen train`` mid-training ends it within 10 s with exit code
143 (not Ray's crash handler) and leaves no Ray process behind. The same run shows ``--workers 2``
training on a 2-CPU machine (the local cluster is sized for the workers and the reader)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.ray_processes import left_behind, ray_pids

pytestmark = pytest.mark.integration
TINY = ["-m", "embed_dim=16", "-m", "hidden_size=24", "-m", "num_layers=1", "-m", "style_dim=4"]


def musicgen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "musicgen.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_ADDRESS": ""})


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def shards(real_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("stop") / "shards"
    done = musicgen("preprocess", "--input", str(real_corpus), "--output", str(out),
                    "--style-from", str(real_corpus / "corpus.csv"), "--val-fraction", "0.25")
    log, _ = done.communicate(timeout=300)
    assert done.returncode == 0, log
    return str(out)


def stop(process: subprocess.Popen, signum: int) -> tuple[int, float, str]:
    """Send ``signum``; the exit code, the seconds from signal to exit, and the output."""
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        log, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        return -9, time.monotonic() - sent, log
    return process.returncode, time.monotonic() - sent, log


def test_sigterm_mid_training_stops_cleanly_and_a_rerun_resumes(shards, tmp_path):
    before = ray_pids()
    args = ["train", "--data", shards, "--name", "run", "--storage", str(tmp_path), "--workers", "2",
            "--max-steps", "400", "--eval-every-steps", "2", "--batch-size", "4", "--max-len", "32", *TINY]
    training = musicgen(*args)
    snapshot = tmp_path / "run" / "checkpoint_manager_snapshot.json"  # Ray Train's record of saved checkpoints
    wait_for(lambda: snapshot.exists() and "checkpoint_" in snapshot.read_text() or training.poll() is not None,
             240, "a recorded checkpoint")
    code, seconds, log = stop(training, signal.SIGTERM)
    print(f"train: SIGTERM to exit {seconds:.1f} s")
    assert code == 143, log[-3000:]
    assert seconds < 10, log[-3000:]
    assert "Aborted" not in log and "core dumped" not in log.lower()
    time.sleep(2)
    assert not left_behind(before), "the local cluster it started is gone"

    # the same command again carries on from the last recorded checkpoint, not from step 0
    saved = max(c["metrics"]["step"] for c in json.loads(snapshot.read_text())["checkpoint_results"])
    rerun = musicgen(*[a if a != "400" else str(saved + 2) for a in args])
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["resumed_from_step"], last["step"]) == (saved, saved + 2), last


def test_sigterm_mid_catalog_stops_cleanly_and_a_rerun_finishes_the_rest(tmp_path):
    before = ray_pids()
    args = ["bulk", "--out", str(tmp_path / "catalog"), "--per-style", "400"]  # the shipped model, ~4 sampling calls
    job = musicgen(*args)
    decided = tmp_path / "catalog" / "progress"  # a part per save of the melodies decided since the last
    wait_for(lambda: any(decided.glob("*.json")) or job.poll() is not None, 240, "the first saved melodies")
    code, seconds, log = stop(job, signal.SIGTERM)
    print(f"bulk: SIGTERM to exit {seconds:.1f} s")
    assert code == 143 and seconds < 10, log[-3000:]
    time.sleep(2)
    assert not left_behind(before), "the local cluster it started is gone"

    rerun = musicgen(*args)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    assert re.search(r"\b[1-9]\d* were already there", log), log[-1500:]  # it carried on, it did not start over
    import pyarrow.parquet as pq

    ids = pq.read_table(tmp_path / "catalog" / "manifest.parquet").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 5 * 400
