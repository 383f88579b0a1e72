"""How long a training step takes on this machine, measured rather than assumed.

CPUs differ by more than 2x in what one LSTM step costs (an AVX-512 Xeon against an
AVX2-only EPYC), so a recipe with a time budget, such as the demo's, sizes its run by
timing a few steps here first (``measure_pace``, then ``steps_within``). The same
timing is the bare loop the Ray Train path is benchmarked against (tests/bench/bench_train.py).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from musicgen.config import TrainConfig
from musicgen.data.collate import Collate
from musicgen.data.shards import read_split
from musicgen.models import build_model
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.training.trainer import check_model_options
from musicgen.training.worker import model_kwargs


@dataclass(frozen=True)
class Pace:
    """Wall time of one optimizer step of a run's model on its own batches, and the tokens it trained on."""

    seconds_per_step: float
    tokens_per_second: float
    threads: int


def measure_pace(config: TrainConfig, steps: int = 5, warm_up: int = 2) -> Pace:
    """``steps`` training steps of ``config``'s model, timed after ``warm_up`` ones, in this process
    with the torch threads a worker gets (``cpus_per_worker``): the same model, collate and
    ``training_step`` a Ray Train worker runs, on randomly drawn training melodies, without Ray."""
    vocab, data_vocab = check_model_options(config)
    tokenizer = tokenizer_from_dict(vocab)
    table = read_split(config.data, "train")
    tokens, styles = table.column("tokens").to_pylist(), table.column("style").to_pylist()
    rows = random.Random(config.seed).choices(range(len(tokens)), k=(steps + warm_up) * config.batch_size)
    collate = Collate(vocab, config.max_len, config.transpose, seed=config.seed, data_vocab=data_vocab)
    batches = [
        collate.collate([tokens[i] for i in chunk], [styles[i] for i in chunk])
        for chunk in (rows[k : k + config.batch_size] for k in range(0, len(rows), config.batch_size))
    ]
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, config.cpus_per_worker))
    try:
        torch.manual_seed(config.seed)
        model = build_model(config.model, **model_kwargs(config, tokenizer))
        optimizers = model.configure_optimizers(config.lr, config.weight_decay)
        for batch in batches[:warm_up]:
            model.training_step(batch["tokens"], batch["style"], optimizers, 0)
        n_tokens, started = 0, time.perf_counter()
        for step, batch in enumerate(batches[warm_up:]):
            model.training_step(batch["tokens"], batch["style"], optimizers, step)
            n_tokens += int((batch["tokens"][:, 1:] != 0).sum())
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    return Pace(seconds / steps, n_tokens / seconds, max(1, config.cpus_per_worker))


def steps_within(budget_s: float, pace: Pace, most: int, multiple: int = 50) -> int:
    """The most steps, up to ``most``, that fit ``budget_s`` seconds of training at ``pace``, rounded
    down to a ``multiple`` (at least one multiple: a run too slow for its budget still trains a little)."""
    fit = int(budget_s / pace.seconds_per_step) // multiple * multiple
    return max(min(most, multiple), min(most, fit))
