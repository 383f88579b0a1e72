"""The framework-free parts of training: targets, evaluation, metric files and plots.

Nothing here knows about Ray; ``musicgen.training.trainer`` adapts it to Ray Train.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from musicgen import storage
from musicgen.models.distill import plain_logits
from musicgen.tokenizers.targets import PAD_ID, inputs_and_targets


def learning_rate(step: int, peak: float, warmup_steps: int, max_steps: int | None) -> float:
    """Linear warm-up to ``peak``, then cosine decay to peak/10 at ``max_steps`` (constant when
    the run has no step budget)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if not max_steps or max_steps <= warmup_steps:
        return peak
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_within(budget_s: float, seconds_per_step: float, most: int, multiple: int = 50) -> int:
    """The most steps, up to ``most``, that fit ``budget_s`` seconds at ``seconds_per_step``, rounded
    down to a ``multiple`` (at least one multiple: a run too slow for its budget still trains a little)."""
    fit = int(budget_s / seconds_per_step) // multiple * multiple
    return max(min(most, multiple), min(most, fit))


class StepBudget:
    """Fits a run's step count to a time budget by the pace of its own steps, timed where it trains:
    CPUs differ by more than 2x in what a step costs, and a process timed alone flatters one that
    shares its cores with Ray's. Call ``tick`` after each optimizer step; after ``skip`` steps (start-up,
    the data pipeline filling) it times ``timed`` steps, then returns the step count that fits once."""

    def __init__(self, budget_s: float, most: int, skip: int = 5, timed: int = 20, clock=time.perf_counter):
        self.budget_s, self.most, self.skip, self.timed, self.clock = budget_s, most, skip, timed, clock
        self.ticks, self.started = 0, None

    def tick(self) -> int | None:
        self.ticks += 1
        if self.ticks == self.skip:
            self.started = self.clock()
        elif self.ticks == self.skip + self.timed:
            return steps_within(self.budget_s, (self.clock() - self.started) / self.timed, self.most)
        return None


@torch.no_grad()
def evaluate(model, batches: Iterable[dict], styles: Sequence[str], max_batches: int | None = None) -> dict:
    """Validation loss (nats/token) and bits/token, overall and per style."""
    was_training = model.training
    model.eval()
    nats: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs, targets = inputs_and_targets(batch["tokens"])
        logits = plain_logits(model, inputs, batch["style"])  # a distilled model's too: at guidance 1
        token_nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=PAD_ID, reduction="none")
        per_row = token_nll.sum(dim=1)
        n_per_row = (targets != PAD_ID).sum(dim=1)
        for s, value, n in zip(batch["style"].tolist(), per_row.tolist(), n_per_row.tolist()):
            for key in ("all", styles[s]):
                nats[key] += value
                counts[key] += n
    model.train(was_training)
    if not counts["all"]:
        return {}
    metrics = {"val_loss": nats["all"] / counts["all"], "val_bits_per_token": nats["all"] / counts["all"] / math.log(2)}
    for style in styles:
        if counts[style]:
            metrics[f"val_bits_per_token/{style}"] = nats[style] / counts[style] / math.log(2)
    return metrics


def append_metrics(run_uri: str, metrics: dict) -> list[dict]:
    """Append one report to ``<run>/metrics.jsonl`` (rewritten whole: S3 has no append) and return all."""
    path = storage.join(run_uri, "metrics.jsonl")
    history = read_metrics(run_uri)
    # after a restart, reports from steps the run has gone back over are replaced
    history = [m for m in history if m.get("step", -1) < metrics.get("step", 0)] + [metrics]
    storage.write_bytes(path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in history).encode())
    return history


def read_metrics(run_uri: str) -> list[dict]:
    path = storage.join(run_uri, "metrics.jsonl")
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_bytes(path).decode().splitlines() if line.strip()]


def plot_loss_curves(history: Sequence[dict], title: str) -> bytes:
    """PNG of train/validation loss and validation bits/token per style against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        left.plot(steps, [m.get(key, float("nan")) for m in history], marker="o", label=label)
    left.set(xlabel="step", ylabel="loss (nats/token)", title=title)
    left.legend()
    per_style = sorted({k for m in history for k in m if k.startswith("val_bits_per_token/")})
    for key in per_style:
        right.plot(steps, [m.get(key, float("nan")) for m in history], marker=".", label=key.split("/", 1)[1])
    baseline = history[-1].get("ngram_bits_per_token") if history else None
    if baseline:
        right.axhline(baseline, color="grey", linestyle="--", label="n-gram baseline")
    right.set(xlabel="step", ylabel="validation bits/token", title="per style")
    if per_style:
        right.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
