"""The training pace measured here, and the demo's step count sized by it to its time budget."""

from __future__ import annotations

import random

import pytest
import torch

from musicgen import storage
from musicgen.config import TrainConfig
from musicgen.demo import fit_budget
from musicgen.tokenizers import EventTokenizer
from musicgen.training import pace as pace_module
from musicgen.training.pace import Pace, measure_pace, steps_within
from tests.conftest import STYLES, jig, write_shards

TINY = {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "style_dim": 4}


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("pace"))
    rng = random.Random(1)
    write_shards(root, EventTokenizer(STYLES), {("train", STYLES[0]): [jig(rng) for _ in range(12)],
                                                ("val", STYLES[0]): [jig(rng) for _ in range(2)]})
    return root


def _config(data: str, **changes) -> TrainConfig:
    return TrainConfig(**{"data": data, "name": "pace", "storage": "", "model": "lstm", "model_config": TINY,
                          "batch_size": 4, "max_len": 64, **changes})


def test_the_pace_is_timed_on_the_runs_own_model_and_batches(tiny_shards):
    threads = torch.get_num_threads()
    tiny = measure_pace(_config(tiny_shards, cpus_per_worker=2), steps=3, warm_up=1)
    assert torch.get_num_threads() == threads, "the caller's thread count is left as it was"
    assert tiny.threads == 2 and tiny.seconds_per_step > 0
    tokens_a_step = tiny.tokens_per_second * tiny.seconds_per_step
    assert 4 * 8 <= tokens_a_step <= 4 * 63, "the non-padding targets of a batch of 4 jigs cut to 64 tokens"
    wide = measure_pace(_config(tiny_shards, model_config={**TINY, "hidden_size": 512, "num_layers": 2}),
                        steps=3, warm_up=1)
    assert wide.seconds_per_step > 2 * tiny.seconds_per_step, (wide, tiny)


def test_steps_within_a_budget():
    pace = Pace(seconds_per_step=0.5, tokens_per_second=1000.0, threads=1)
    assert steps_within(100, pace, most=1000) == 200
    assert steps_within(100, pace, most=150) == 150, "never more than asked"
    assert steps_within(130, pace, most=1000) == 250, "a multiple of 50"
    assert steps_within(1, pace, most=1000) == 50, "a CPU too slow for the budget still trains a little"


def test_the_demo_plans_its_steps_once_and_keeps_the_plan_when_it_resumes(tmp_path, monkeypatch):
    timed = []

    def fake_pace(config):
        timed.append(config.max_steps)
        return Pace(seconds_per_step=0.5, tokens_per_second=1000.0, threads=config.cpus_per_worker)

    monkeypatch.setattr(pace_module, "measure_pace", fake_pace)
    runs = str(tmp_path)
    planned = fit_budget(_config("shards", max_steps=1000), runs, budget_s=100)
    assert (planned.max_steps, planned.eval_every_steps) == (200, 50)
    assert storage.read_json(storage.join(runs, "demo-plan.json"))["steps"] == 200
    monkeypatch.setattr(pace_module, "measure_pace",
                        lambda config: pytest.fail("a resumed run must keep its schedule, not time again"))
    assert fit_budget(_config("shards", max_steps=1000), runs, budget_s=100).max_steps == 200
    monkeypatch.setattr(pace_module, "measure_pace", fake_pace)
    assert fit_budget(_config("shards", max_steps=120), runs, budget_s=100).max_steps == 120, "asked anew: a new plan"
    assert timed == [1000, 120]
