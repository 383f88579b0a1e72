"""Framework-free training pieces: learning-rate schedule, targets, metric files."""

import pytest
import torch

from musicgen.models.targets import inputs_and_targets
from musicgen.training.loop import append_metrics, read_metrics


def test_learning_rate_schedule():
    from musicgen.training.loop import learning_rate

    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(55, 1.0, 10, 100) == pytest.approx(0.55)
    assert learning_rate(5000, 1.0, 10, None) == 1.0


def test_style_token_is_not_a_target():
    tokens = torch.tensor([[1, 9, 5, 6, 2, 0], [7, 8, 5, 6, 5, 6]])  # a start, and a window from the middle
    inputs, targets = inputs_and_targets(tokens)
    assert inputs.tolist() == [[1, 9, 5, 6, 2], [7, 8, 5, 6, 5]]
    assert targets.tolist() == [[0, 5, 6, 2, 0], [8, 5, 6, 5, 6]]


def test_metrics_after_a_restart_replace_the_steps_gone_over(tmp_path):
    run = str(tmp_path)
    for step in (10, 20, 30):
        append_metrics(run, {"step": step, "loss": step})
    append_metrics(run, {"step": 20, "loss": -1})  # resumed from the step-10 checkpoint
    assert [(m["step"], m["loss"]) for m in read_metrics(run)] == [(10, 10), (20, -1)]


@pytest.mark.parametrize("workers,cpus_per_worker,use_gpu,cluster_cpus,waits", [
    (2, 1, False, 2, True),  # both CPUs held by workers: Ray Data cannot read
    (1, 1, False, 2, False),
    (2, 1, False, 3, False),
    (2, 2, False, 4, True),
    (4, 1, True, 4, True),  # GPU workers hold their CPUs too
    (4, 1, True, 5, False),
])
def test_training_that_would_wait_forever_for_data_is_named(workers, cpus_per_worker, use_gpu, cluster_cpus, waits):
    from musicgen.config import TrainConfig
    from musicgen.training.trainer import cpu_shortfall

    config = TrainConfig(data="d", name="n", storage="s", workers=workers, cpus_per_worker=cpus_per_worker,
                         use_gpu=use_gpu)
    message = cpu_shortfall(config, cluster_cpus)
    assert (message is not None) == waits
    if waits:
        assert f"this cluster has {cluster_cpus}" in message and "--workers" in message
