"""The real jobs on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster).

Preprocessing's Ray Data tasks and a 2-worker Ray Train run must use more than one node:
the node ids come from Ray's state API (task and actor records kept by the GCS), so the
library needs no test hook.

Layout: a 1-CPU head (the driver, Ray Data's read tasks) and two 1-CPU worker nodes. Two
Train workers of 1 CPU each cannot share a 1-CPU node, so they land on two different
nodes, and one CPU stays free for the Ray Data tasks that feed them (with only two 1-CPU
nodes the two workers would hold every CPU and the data stream would wait forever).

Do not use the module-scoped ``ray_local`` fixture here: it would start a second Ray.
"""

from __future__ import annotations

import socket
import time

import pytest

from musicgen.config import PreprocessConfig, TrainConfig
from musicgen.data.preprocess import run_preprocess
from musicgen.training.loop import read_metrics
from musicgen.training.trainer import run_training

pytestmark = pytest.mark.integration
TINY_LSTM = {"embed_dim": 32, "hidden_size": 48, "num_layers": 1, "style_dim": 8}


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's Ray would make ray.init below a no-op
        ray.shutdown()
    with socket.socket() as s:  # the state API needs the dashboard; 8265 may be taken by another cluster
        s.bind(("127.0.0.1", 0))
        dashboard_port = s.getsockname()[1]
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                      "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
    try:
        c.add_node(num_cpus=1)
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _poll(fetch, ok, timeout_s: float = 30.0):
    """Task and actor events reach the GCS in batches (about once a second): wait for them."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = fetch()
        except Exception:  # the dashboard's state API may still be starting
            value = None
        if value is not None and ok(value):
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(1.0)


def test_preprocess_and_two_worker_training_use_several_nodes(cluster, real_corpus, tmp_path):
    from ray.util.state import list_actors, list_tasks

    nodes = _alive_node_ids()
    assert len(nodes) == 3

    shards = tmp_path / "shards"
    stats = run_preprocess(
        PreprocessConfig(inputs=(str(real_corpus),), output=str(shards), style_from=str(real_corpus / "corpus.csv"),
                         val_fraction=0.25, test_fraction=0.1, files_per_batch=4)  # many small tasks to spread
    )
    assert stats["melodies"] > 20

    def parse_tasks():
        tasks = list_tasks(filters=[("state", "=", "FINISHED"), ("type", "=", "NORMAL_TASK")], limit=10_000,
                           raise_on_missing_output=False)
        return [t for t in tasks if "parse_files" in t.name]

    parsed = _poll(parse_tasks, lambda ts: len({t.node_id for t in ts}) >= 2)
    assert parsed, "no finished parse_files task recorded"
    parse_nodes = {t.node_id for t in parsed}
    assert len(parse_nodes) >= 2, f"preprocessing ran on one node only: {[(t.name, t.node_id) for t in parsed]}"
    assert parse_nodes <= nodes

    summary = run_training(TrainConfig(data=str(shards), name="multinode", storage=str(tmp_path / "runs"),
                                       model="lstm", model_config=TINY_LSTM, workers=2, batch_size=8, max_len=64,
                                       max_steps=4, eval_every_steps=2, lr=3e-3, max_failures=0))
    assert summary["steps"] == 4
    assert [m["step"] for m in read_metrics(str(tmp_path / "runs" / "multinode"))] == [2, 4]

    def train_workers():
        return list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=1_000, raise_on_missing_output=False)

    workers = _poll(train_workers, lambda ws: len(ws) >= 2)
    assert workers and len(workers) == 2, workers
    worker_nodes = {w.node_id for w in workers}
    assert len(worker_nodes) == 2, f"both Train workers ran on one node: {worker_nodes}"
    assert worker_nodes <= nodes
