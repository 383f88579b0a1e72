"""What each command needs of a Ray cluster, and how a local cluster is sized to fit it (no Ray started)."""

import os
import signal
import time

import pytest

from musicgen import stopping
from musicgen.catalog.bulk import actor_needs
from musicgen.config import TrainConfig
from musicgen.runtime import ClusterTooSmall, local_cpus, shortfall
from musicgen.serving.app import Autoscaling, ServeConfig
from musicgen.serving.app import resource_needs as serve_needs
from musicgen.training.trainer import resource_needs as train_needs


def test_a_local_cluster_is_sized_to_fit_or_refused_before_it_starts():
    machine = os.cpu_count()
    assert local_cpus(None, None, "x") is None  # Ray's own default: the machine's CPUs
    assert local_cpus(None, {"CPU": machine + 3}, "x") == machine + 3  # logical CPUs: more than the machine
    assert local_cpus(None, {"CPU": 1}, "x") == machine
    assert local_cpus(4, {"CPU": 3}, "x") == 4
    with pytest.raises(ClusterTooSmall, match="training needs 3 CPU.*--num-cpus is 2"):
        local_cpus(2, {"CPU": 3}, "training")


def test_shortfall_names_what_is_missing():
    assert shortfall({"CPU": 3, "GPU": 0}, {"CPU": 2.0}) == {"CPU": (3, 2.0)}
    assert shortfall({"GPU": 1}, {"CPU": 8.0}) == {"GPU": (1, 0.0)}
    assert shortfall({"CPU": 1.35}, {"CPU": 2.0}) == {}


@pytest.mark.parametrize("workers, cpus_per_worker, use_gpu, need", [
    (1, 1, False, {"CPU": 2}),  # the worker, and one CPU for Ray Data to read the shards
    (2, 1, False, {"CPU": 3}),
    (2, 2, False, {"CPU": 5}),
    (4, 1, True, {"CPU": 5, "GPU": 4}),  # GPU workers hold their CPUs too
])
def test_training_needs_a_cpu_per_worker_and_one_to_read(workers, cpus_per_worker, use_gpu, need):
    config = TrainConfig(data="d", name="n", storage="s", workers=workers, cpus_per_worker=cpus_per_worker,
                         use_gpu=use_gpu)
    got, words = train_needs(config)
    assert got == need and "--workers" in words


def test_serving_needs_every_min_replica_and_the_ingress():
    config = ServeConfig(model="m", styles=("a", "b"), autoscaling=Autoscaling(2, 3),
                         style_autoscaling={"b": Autoscaling(1, 1)}, replica_num_cpus=0.5, ingress_num_cpus=0.1)
    need, words = serve_needs(config, ("a", "b"))
    assert need == {"CPU": pytest.approx(3 * 0.5 + 0.1)} and "3 replica(s)" in words
    need, _ = serve_needs(ServeConfig(model="m", replica_num_gpus=1), ("a", "b", "c"))
    assert need["GPU"] == 3


def test_the_bulk_pool_needs_a_cpu_or_gpu_per_actor():
    assert actor_needs(4, False)[0] == {"CPU": 4}
    assert actor_needs(2, True)[0] == {"GPU": 2}


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_command_with_its_exit_code_and_handlers_come_back(signum, code, monkeypatch):
    monkeypatch.setenv("MUSICGEN_STOP_DEADLINE_S", "0.3")
    before = signal.getsignal(signal.SIGTERM)

    def command() -> int:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # interrupted at once
        return 0

    started = time.monotonic()
    assert stopping.run(command) == code
    assert time.monotonic() - started < 2
    assert signal.getsignal(signal.SIGTERM) is before
    time.sleep(0.6)  # a command that stopped in time disarms its deadline: this process lives on
