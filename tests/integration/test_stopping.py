"""Clean stops: SIGTERM to a real ``musicgen train`` mid-training ends it within 10 s with exit code
143 (not Ray's crash handler) and leaves no Ray process behind. The same run shows ``--workers 2``
training on a 2-CPU machine (the local cluster is sized for the workers and the reader)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.ray_processes import left_behind, ray_pids, tagged_env

pytestmark = pytest.mark.integration
TINY = ["-m", "embed_dim=16", "-m", "hidden_size=24", "-m", "num_layers=1", "-m", "style_dim=4"]


def musicgen(*args: str) -> subprocess.Popen:
    """``musicgen *args`` on a local cluster of its own; ``.tag`` marks the Ray processes it starts."""
    env, tag = tagged_env({**os.environ, "RAY_ADDRESS": ""})
    process = subprocess.Popen([sys.executable, "-m", "musicgen.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    process.tag = tag
    return process


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
    assert not left_behind(before, training.tag), "the local cluster it started is gone"

    # the same command again carries on from the last recorded checkpoint, not from step 0
    saved = max(c["metrics"]["step"] for c in json.loads(snapshot.read_text())["checkpoint_results"])
    rerun = musicgen(*[a if a != "400" else str(saved + 2) for a in args])
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["resumed_from_step"], last["step"]) == (saved, saved + 2), last


def test_ctrl_c_mid_training_stops_like_sigterm(shards, tmp_path):
    """Ray Train's own SIGINT handler would abort the run and return from fit() as if it had
    finished (exit 0): Ctrl-C must stop it as SIGTERM does, exit 130, its cluster gone."""
    before = ray_pids()
    training = musicgen("train", "--data", shards, "--name", "run", "--storage", str(tmp_path), "--max-steps", "400",
                        "--eval-every-steps", "2", "--batch-size", "4", "--max-len", "32", *TINY)
    metrics = tmp_path / "run" / "metrics.jsonl"  # a report written: fit() is running
    wait_for(lambda: metrics.exists() and metrics.read_text().strip() or training.poll() is not None, 240,
             "a training report")
    code, seconds, log = stop(training, signal.SIGINT)
    print(f"train: SIGINT to exit {seconds:.1f} s")
    assert (code, seconds < 10) == (130, True), log[-3000:]
    assert "Gracefully aborting" not in log and "validation bits/token" not in log, log[-3000:]  # no summary
    time.sleep(2)
    assert not left_behind(before, training.tag), "the local cluster it started is gone"


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
    assert not left_behind(before, job.tag), "the local cluster it started is gone"

    rerun = musicgen(*args)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    assert re.search(r"\b[1-9]\d* were already there", log), log[-1500:]  # it carried on, it did not start over
    import pyarrow.parquet as pq

    ids = pq.read_table(tmp_path / "catalog" / "manifest.parquet").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 5 * 400


# preprocess, evaluate and serve: the signal mid-work, exit 130/143 within 10 s, no crash dump, no Ray
# process left, and a rerun that carries on. Each reads its output as it comes (a full pipe would stall it).
class Running:
    """A ``musicgen`` command whose output is collected as it comes."""

    def __init__(self, *args: str):
        self.process = musicgen(*args)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 240) -> None:
        wait_for(lambda: text in self.log or self.process.poll() is not None, timeout, repr(text))
        assert self.process.poll() is None, f"it ended before {text!r}:\n{self.log[-3000:]}"

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``: the exit code and the seconds from the signal to the exit."""
        assert ray_pids(self.process.tag), "the local cluster it started is found by its tag"
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        seconds = time.monotonic() - sent
        self.reader.join(timeout=10)
        return self.process.returncode, seconds

    def finish(self, timeout: float = 300) -> int:
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return self.process.returncode


def assert_clean_stop(command: str, code: int, seconds: float, log: str, signum: int, before: dict, tag: str) -> None:
    print(f"{command}: {signal.Signals(signum).name} to exit {seconds:.1f} s")
    assert code == 128 + signum, log[-3000:]  # 143 SIGTERM, 130 SIGINT
    assert seconds < 10, log[-3000:]
    assert f"musicgen: {signal.Signals(signum).name}: stopping" in log, log[-3000:]
    assert "SIGTERM received" not in log and "Aborted" not in log and "core dumped" not in log.lower(), log[-3000:]
    wait_for(lambda: not left_behind(before, tag), 5, "the local cluster it started to go")


DATASET_RUNNING = "Starting execution of Dataset"  # Ray Data's first line of the job's work, shown with -v
VERBOSE = "-v"  # Ray's own lines reach the terminal, so the test can wait for the job's work to start


@pytest.fixture(scope="module")
def copies(real_corpus, tmp_path_factory):
    """The small corpus four times over (folder = style): four times the parsing, the same melodies."""
    root = tmp_path_factory.mktemp("copies")
    for i in range(4):
        for style in (d for d in real_corpus.iterdir() if d.is_dir()):
            shutil.copytree(style, root / f"copy{i}" / style.name)
    return root


PREPROCESS = ["--val-fraction", "0", "--test-fraction", "0.25"]  # every style has train melodies to judge by


@pytest.fixture(scope="module")
def clean_shards(copies, tmp_path_factory):
    """What preprocess writes when nothing stops it."""
    out = tmp_path_factory.mktemp("clean") / "shards"
    done = Running("preprocess", "--input", str(copies), "--output", str(out), *PREPROCESS)
    assert done.finish() == 0, done.log[-3000:]
    return out


def shard_contents(shards) -> dict:
    import pyarrow.parquet as pq

    contents = {}
    for split in ("train", "val", "test"):
        folder = shards / "melodies" / f"split={split}"
        contents[split] = pq.read_table(folder).sort_by("melody_id").to_pylist() if folder.exists() else []
    return contents


def test_sigint_then_sigterm_mid_preprocess_stop_cleanly_and_a_rerun_writes_the_same_shards(
        copies, clean_shards, tmp_path):
    before = ray_pids()
    args = [VERBOSE, "preprocess", "--input", str(copies), "--output", str(tmp_path / "shards"), *PREPROCESS]
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, then what a container's stop sends
        job = Running(*args)
        job.wait_for_line(DATASET_RUNNING)
        assert_clean_stop("preprocess", *job.stop(signum), job.log, signum, before, job.process.tag)

    rerun = Running(*args)
    assert rerun.finish() == 0, rerun.log[-3000:]
    assert shard_contents(tmp_path / "shards") == shard_contents(clean_shards)
    stats, clean = (json.loads((s / "stats.json").read_text()) for s in (tmp_path / "shards", clean_shards))
    assert stats["per_style"] == clean["per_style"] and stats["melodies"] == clean["melodies"] > 0


@pytest.fixture(scope="module")
def catalog(clean_shards, tmp_path_factory):
    """A catalog folder as the bulk job writes it (manifest.parquet, <style>/<id>.mid), of corpus melodies
    written again many times over: the judges have work for several seconds without a bulk run first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from musicgen.catalog.layout import MANIFEST
    from musicgen.evaluation.report import corpus_melodies
    from musicgen.music.midi import write_midi

    root = tmp_path_factory.mktemp("catalog")
    rows = []
    for i in range(5):
        for j, labelled in enumerate(corpus_melodies(str(clean_shards), "train")):
            path = f"{labelled.style}/{i:03d}-{j:03d}.mid"
            (root / labelled.style).mkdir(exist_ok=True)
            (root / path).write_bytes(write_midi([("melody", labelled.melody)]))
            rows.append({"style": labelled.style, "mid_path": path, "model_name": "corpus", "model_id": "corpus"})
    pq.write_table(pa.Table.from_pylist(rows), root / MANIFEST)
    return root


def test_sigterm_mid_evaluate_stops_cleanly_and_a_rerun_writes_the_report(catalog, clean_shards, tmp_path):
    before = ray_pids()
    # three judges on two cores: the local cluster is sized for them (3 logical CPUs)
    args = [VERBOSE, "evaluate", "--generated", str(catalog), "--data", str(clean_shards),
            "--out", str(tmp_path / "report"), "--actors", "3"]
    job = Running(*args)
    job.wait_for_line(DATASET_RUNNING)
    assert_clean_stop("evaluate", *job.stop(signal.SIGTERM), job.log, signal.SIGTERM, before, job.process.tag)
    assert not (tmp_path / "report" / "report.md").exists()

    rerun = Running(*args)
    assert rerun.finish() == 0, rerun.log[-3000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["models"][0]["n"] == len(pq_rows(catalog))


def pq_rows(catalog) -> list[dict]:
    import pyarrow.parquet as pq

    from musicgen.catalog.layout import MANIFEST

    return pq.read_table(catalog / MANIFEST).to_pylist()


def test_sigterm_to_serve_stops_cleanly(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "serve.yaml"
    config.write_text("styles: [irish_folk]\n")  # one style: a quicker start; the stop is the same code
    before = ray_pids()
    server = Running("serve", "--config", str(config), "--port", str(port))

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return server.process.poll() is not None  # ended: stop waiting, the assertion below says why

    wait_for(healthy, 240, "the service to answer /healthz")
    assert server.process.poll() is None, server.log[-3000:]
    assert_clean_stop("serve", *server.stop(signal.SIGTERM), server.log, signal.SIGTERM, before, server.process.tag)
