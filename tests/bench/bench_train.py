"""Training throughput: the Ray Train + Ray Data path against a bare loop, in one run.

The bare loop steps the same model (default LSTM, 3x256) with the same
``training_step`` on batches already collated in memory: no Ray, no data
pipeline. The Ray path is ``run_training`` with the same batch size and
window, and reports tokens/s measured inside the worker over its training
steps (validation excluded). Then 2 workers, each on one CPU.

With ``--cache-rounds N`` it instead times the demo's set-up (the demo LSTM, one worker with a
thread per core) with the training split read once into the object store (``cached_tokens``)
against streamed from Parquet each epoch, alternating, N rounds; tokens/s of the second report
(steps after the first ``--steps``), so the start-up is not counted.

    python tests/bench/bench_train.py --data SHARDS [--steps 60] [--out FILE.json]
    python tests/bench/bench_train.py --data artifacts/demo/shards --steps 100 --cache-rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from machine import cpu_model  # tests/bench/machine.py, next to this script

from musicgen.config import TrainConfig


def bare_loop(data: str, model_name: str, steps: int, batch_size: int, max_len: int, threads: int) -> dict:
    from musicgen import storage
    from musicgen.data.collate import Collate
    from musicgen.data.shards import read_split
    from musicgen.models import build_model
    from musicgen.tokenizers import tokenizer_from_dict

    torch.set_num_threads(threads)
    vocab = storage.read_json(storage.join(data, "vocab.json"))
    tokenizer = tokenizer_from_dict(vocab)
    table = read_split(data, "train")
    tokens, styles = table.column("tokens").to_pylist(), table.column("style").to_pylist()
    collate = Collate(vocab, max_len, transpose=3, seed=0)
    batches = [
        collate.collate(tokens[i : i + batch_size], styles[i : i + batch_size])
        for i in range(0, min(len(tokens), (steps + 5) * batch_size), batch_size)
    ]
    model = build_model(model_name, vocab_size=len(tokenizer), n_styles=len(tokenizer.styles))
    optimizers = model.configure_optimizers(2e-3, 0.01)
    for batch in batches[:3]:  # warm-up
        model.training_step(batch["tokens"], batch["style"], optimizers, 0)
    n_tokens, started = 0, time.perf_counter()
    for step, batch in enumerate(batches[3 : 3 + steps]):
        model.training_step(batch["tokens"], batch["style"], optimizers, step)
        n_tokens += int((batch["tokens"][:, 1:] != 0).sum())
    seconds = time.perf_counter() - started
    return {"steps": steps, "tokens_per_second": n_tokens / seconds}


def ray_path(data: str, model_name: str, steps: int, batch_size: int, max_len: int, workers: int, cpus: int,
             **config) -> dict:
    """run_training in a fresh process and local cluster; tokens/s per worker from the last report
    (``steps`` each; ``config``: more TrainConfig fields)."""
    config.setdefault("max_steps", steps)
    code = f"""
import json, tempfile, ray
from musicgen.config import TrainConfig
from musicgen.training.trainer import run_training
from musicgen.training.loop import read_metrics
ray.init(num_cpus={cpus}, include_dashboard=False, logging_level="ERROR")
with tempfile.TemporaryDirectory() as runs:
    config = TrainConfig(data={data!r}, name="bench", storage=runs, model={model_name!r}, workers={workers},
                         batch_size={batch_size}, max_len={max_len}, eval_every_steps={steps},
                         val_batches=1, max_failures=0, **{config!r})
    run_training(config)
    last = read_metrics(runs + "/bench")[-1]
print("RESULT" + json.dumps({{k: last[k] for k in ("tokens_per_second", "tokens_per_second_per_worker", "step")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])


def cache_rounds(args) -> dict:
    """The demo's training set-up with the split cached against streamed, alternating."""
    from musicgen.demo import DEMO_LSTM

    cores = os.cpu_count() or 1
    rounds = []
    for _ in range(args.cache_rounds):
        row = {}
        for name, cached in (("streamed", 0), ("cached", TrainConfig.cached_tokens)):
            row[name] = round(ray_path(args.data, "lstm", args.steps, args.batch_size, args.max_len, workers=1,
                                       cpus=cores + 1, max_steps=2 * args.steps, model_config=DEMO_LSTM,
                                       cpus_per_worker=cores, cached_tokens=cached)["tokens_per_second"])
        row["ratio"] = round(row["cached"] / row["streamed"], 2)
        print(json.dumps(row), flush=True)
        rounds.append(row)
    return {"steps": f"{args.steps + 1}-{2 * args.steps}", "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="output folder of musicgen preprocess")
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--cache-rounds", type=int, default=0,
                        help="time the demo's set-up, training split cached against streamed, this many rounds")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.cache_rounds:
        figures = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs", **cache_rounds(args)}
        print(json.dumps(figures))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(figures, f, indent=2)
        return

    bare = bare_loop(args.data, args.model, args.steps, args.batch_size, args.max_len, threads=1)
    one = ray_path(args.data, args.model, args.steps, args.batch_size, args.max_len, workers=1, cpus=2)
    # two workers take both CPUs; Ray Data's read tasks then share them (a third logical CPU)
    two = ray_path(args.data, args.model, args.steps, args.batch_size, args.max_len, workers=2, cpus=3)
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "model": args.model,
        "batch": f"{args.batch_size} x {args.max_len} tokens",
        "bare_loop_1_thread_tokens_per_second": round(bare["tokens_per_second"]),
        "ray_train_1_worker_tokens_per_second": round(one["tokens_per_second_per_worker"]),
        "ray_train_2_workers_tokens_per_second_total": round(two["tokens_per_second"]),
        "ray_train_2_workers_tokens_per_second_per_worker": round(two["tokens_per_second_per_worker"]),
    }
    figures["ray_1_worker_vs_bare"] = round(one["tokens_per_second_per_worker"] / bare["tokens_per_second"], 3)
    figures["ray_2_workers_vs_1_worker"] = round(two["tokens_per_second"] / one["tokens_per_second_per_worker"], 3)
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
