"""Framework-free training pieces: learning-rate schedule, targets, metric files."""

import pytest
import torch

from musicgen.tokenizers.targets import inputs_and_targets
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


def test_steps_within_a_budget():
    from musicgen.training.loop import steps_within

    assert steps_within(100, 0.5, most=1000) == 200
    assert steps_within(100, 0.5, most=150) == 150, "never more than asked"
    assert steps_within(130, 0.5, most=1000) == 250, "a multiple of 50"
    assert steps_within(1, 0.5, most=1000) == 50, "a CPU too slow for the budget still trains a little"


def test_a_step_budget_times_steps_after_the_start_up_and_decides_once():
    from musicgen.training.loop import StepBudget

    now = [0.0]
    budget = StepBudget(budget_s=60, most=1000, skip=2, timed=4, clock=lambda: now[0])
    decisions = []
    for step in range(1, 12):
        now[0] += 10.0 if step <= 2 else 0.2  # slow start-up steps are not what the budget is sized by
        decisions.append(budget.tick())
    assert decisions[:5] == [None] * 5 and decisions[6:] == [None] * 5
    assert decisions[5] == 300, "60 s at 0.2 s a step"
