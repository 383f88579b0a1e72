"""The one place that decides which precision a model samples in: ``resolve_precision``.

Which precision is fastest depends on the CPU, not on the model kind: int8
wins where ``torch._int_mm`` has VNNI/AMX kernels and loses several-fold
where it has none; bf16 wins at large batches where the CPU has bf16 matrix
units (AMX). So ``auto`` times a few sampling steps of every precision the
model offers here, at the batch sizes it will serve, and keeps the fastest.
The measurement takes well under a second for small models and is cached
per CPU model, artifact, batch sizes, thread count and torch version
(``MUSICGEN_PRECISION_CACHE``: the cache file, or ``off``), so a second
start on the same kind of machine does not time again. The CPU is its model
name and the flags that decide precision (``cpu_summary``): one name such as
"AMD EPYC" covers chips with and without VNNI and bf16 units, on which the
fastest precision differs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from musicgen.config import check_precision
from musicgen.tokenizers import Tokenizer

log = logging.getLogger(__name__)

CACHE_ENV = "MUSICGEN_PRECISION_CACHE"
REPEATS = 5  # best of this many sampling calls per precision and batch size (fewer once BUDGET_S is spent)
BUDGET_S = 0.5  # per batch size, for all precisions together (at least two calls each)
DROP = 3.0  # a precision this many times slower than the fastest in its warm-up call is timed no further
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``precision`` a generator samples in, and why: ``source`` is ``asked`` (set explicitly),
    ``only`` (the one the model offers here), ``measured`` or ``cached`` (``auto``)."""

    precision: str
    requested: str
    source: str
    batch_sizes: tuple[int, ...] = ()
    threads: int = 0
    cpu: str = ""
    ms_per_step: dict[str, list[float | None]] | None = None  # per precision, one figure per batch size

    def as_dict(self) -> dict:
        """As JSON holds it (what the bulk summary, the manifest and /v1/styles report)."""
        return {**asdict(self), "batch_sizes": list(self.batch_sizes)}

    def describe(self) -> str:
        """One line for people, e.g. ``precision int8 (auto, measured ...: int8 0.21 ms/step, fp32 0.34)``."""
        if not self.ms_per_step:
            how = "as asked" if self.source == "asked" else "the only one offered here"
            return f"precision {self.precision} ({how})"
        timings = "; ".join(f"{p} " + ", ".join("–" if t is None else f"{t:.3g}" for t in ms)
                            for p, ms in self.ms_per_step.items())
        return (f"precision {self.precision} (auto, {self.source} on {self.cpu}, {self.threads} thread(s); "
                f"ms per sampling step at batch {', '.join(map(str, self.batch_sizes))}: {timings})")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary() -> str:
    """The CPU model and the flags that decide which precision is fast: what a benchmark records."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        present = [f for f in CPU_FLAGS if f in flags.split(":", 1)[1].split()]
    except (OSError, StopIteration):
        present = []
    return f"{cpu_model()} ({' '.join(present) or 'flags unknown'})"


def available_precisions(model: nn.Module, device: torch.device) -> tuple[str, ...]:
    """What ``model`` can sample in on ``device``: LSTM and GAN cells on CPU offer int8, and bf16 where
    oneDNN supports it; everything else samples in fp32."""
    if not hasattr(model, "prepare_sampling") or device.type != "cpu":
        return ("fp32",)
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return ("fp32", "int8", "bf16") if bf16 else ("fp32", "int8")


def resolve_precision(precision: str, model: nn.Module, tokenizer: Tokenizer, device: torch.device,
                      batch_sizes: tuple[int, ...] = (1,), artifact: str = "",
                      threads: int | None = None) -> PrecisionChoice:
    """What ``precision`` means for ``model`` on ``device``: itself when available, else (``auto``) the
    fastest here at ``batch_sizes`` melodies a call with ``threads`` torch threads (default: the current
    count). ``artifact`` (the weights' sha256) keys the cache; without it nothing is cached."""
    check_precision(precision)
    offered = available_precisions(model, device)
    if precision != "auto":
        if precision not in offered:
            raise ValueError(f"{precision} sampling needs an LSTM or GAN model on CPU (offered here: "
                             f"{', '.join(offered)}), not a {type(model).__name__} on {device}")
        return PrecisionChoice(precision, precision, "asked")
    if len(offered) == 1:
        return PrecisionChoice(offered[0], precision, "only")
    threads = threads or torch.get_num_threads()
    batch_sizes = tuple(sorted(set(batch_sizes)))
    key = "|".join([cpu_summary(), artifact, ",".join(offered), ",".join(map(str, batch_sizes)), f"{threads} threads",
                    f"torch {torch.__version__}"])
    cached = _read_cache().get(key) if artifact else None
    if cached:
        return PrecisionChoice(cached["precision"], precision, "cached", batch_sizes, threads, cpu_model(),
                               cached["ms_per_step"])
    ms = measure(model, tokenizer, offered, batch_sizes, threads)
    choice = PrecisionChoice(fastest(ms), precision, "measured", batch_sizes, threads, cpu_model(), ms)
    log.info("sampling %s", choice.describe())
    if artifact:
        _write_cache(key, {"precision": choice.precision, "ms_per_step": ms})
    return choice


def fastest(ms_per_step: dict[str, list[float | None]]) -> str:
    """The precision whose worst slowdown against the best at any batch size is smallest (one
    precision serves every batch size: a melody must not depend on the batch it was sampled in).
    A precision with a size left untimed (``None``: dropped by ``measure``) is out."""
    timed = {p: ms for p, ms in ms_per_step.items() if None not in ms}
    n = len(next(iter(timed.values())))
    best = [min(ms[i] for ms in timed.values()) for i in range(n)]
    return min(timed, key=lambda p: max(timed[p][i] / best[i] for i in range(n)))


def measure(model: nn.Module, tokenizer: Tokenizer, precisions: tuple[str, ...], batch_sizes: tuple[int, ...],
            threads: int) -> dict[str, list[float | None]]:
    """Milliseconds per sampling step of each precision at each batch size: the sampler itself on
    one-bar melodies at the model's default guidance (a step timed alone in a loop flatters large
    weights, which the grammar's work between steps evicts from the caches), precisions interleaved
    so a slow spell of a shared machine hits them alike, best of up to ``REPEATS``.

    A precision whose warm-up call is ``DROP`` times slower than the fastest one's is timed no
    further: its warm-up figure stands for that size and ``None`` for the larger ones (where int8
    has no VNNI it is several times slower, and timing it at a large batch took seconds)."""
    from musicgen.sampling.sampler import SampleRequest, sample_tokens

    models = {}
    for p in precisions:
        models[p] = copy.deepcopy(model).eval()
        models[p].prepare_sampling(p)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out: dict[str, list[float | None]] = {p: [] for p in precisions}
        alive = list(precisions)
        for b in batch_sizes:
            requests = [SampleRequest(tokenizer.styles[i % len(tokenizer.styles)], i, bars=1) for i in range(b)]
            steps, warm_up = {}, {}
            for p in alive:
                t0 = time.perf_counter()
                steps[p] = max(map(len, sample_tokens(models[p], tokenizer, requests))) - 2
                warm_up[p] = (time.perf_counter() - t0) / steps[p]
            dropped = [p for p in alive if warm_up[p] > DROP * min(warm_up.values())]
            alive = [p for p in alive if p not in dropped]
            best = dict.fromkeys(alive, float("inf"))
            started = time.perf_counter()
            for repeat in range(REPEATS):
                if repeat >= 2 and time.perf_counter() - started > BUDGET_S:
                    break
                for p in alive:
                    t0 = time.perf_counter()
                    sample_tokens(models[p], tokenizer, requests)
                    best[p] = min(best[p], (time.perf_counter() - t0) / steps[p])
            for p in precisions:
                seconds = best.get(p, warm_up.get(p))
                out[p].append(None if seconds is None else round(1000 * seconds, 4))
        return out
    finally:
        torch.set_num_threads(previous)


def cache_path() -> Path | None:
    """``$MUSICGEN_PRECISION_CACHE`` (``off``: no cache), else ``$XDG_CACHE_HOME/musicgen/precision.json``
    or ``~/.cache/musicgen/precision.json``."""
    setting = os.environ.get(CACHE_ENV)
    if setting is not None:
        return None if setting.lower() in ("", "off", "0", "none") else Path(setting)
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "musicgen" / "precision.json"


def _read_cache() -> dict:
    path = cache_path()
    try:
        return json.loads(path.read_text()) if path and path.is_file() else {}
    except (OSError, ValueError):
        return {}  # an unreadable cache only costs a measurement


def _write_cache(key: str, entry: dict) -> None:
    """Add one decision, atomically (several replicas may start at once; the last write wins)."""
    path = cache_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {**_read_cache(), key: entry}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f, indent=1)
        os.replace(f.name, path)
    except OSError as exc:
        log.debug("precision cache %s not written: %s", path, exc)
