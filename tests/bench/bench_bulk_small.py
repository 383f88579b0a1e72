"""A small catalog (the demo's: 40 melodies per style, MIDI, ABC and WAV) with its round cut into
several sampling calls against one call per batch of the plan, in one run.

A round of ~220 melodies is one batch of 512: as one call it ran on one actor while the other
waited. The baseline here patches ``plan_blocks`` back to one call per batch; the rounds alternate
the two (this machine's speed drifts by up to ~2x over minutes) on one local Ray cluster, each job
into a fresh folder, wall time of ``run_bulk`` including its start-up.

    python tests/bench/bench_bulk_small.py [--model pretrained] [--per-style 40] [--rounds 2] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from bench_form import cpu_model  # beside this script

import musicgen.catalog.bulk as bulk
from musicgen.config import BulkConfig
from musicgen.music.export import wav_available


def one_call_per_batch(remaining, batch_size, round_size):
    return [remaining[i : i + batch_size] for i in range(0, len(remaining), batch_size)]


def job(model: str, per_style: int, formats: tuple[str, ...], cut) -> float:
    original = bulk.plan_blocks
    bulk.plan_blocks = cut
    try:
        with tempfile.TemporaryDirectory() as out:
            began = time.perf_counter()
            summary = bulk.run_bulk(BulkConfig(model=model, out=out, per_style=per_style, formats=formats))
            seconds = time.perf_counter() - began
        assert sum(summary["accepted"].values()) == per_style * len(summary["accepted"])
        return seconds
    finally:
        bulk.plan_blocks = original


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--per-style", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    formats = ("mid", "abc", "wav") if wav_available() else ("mid", "abc")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rounds = []
    for _ in range(args.rounds):
        before = job(args.model, args.per_style, formats, one_call_per_batch)
        after = job(args.model, args.per_style, formats, bulk.plan_blocks)
        rounds.append({"one_call_s": round(before, 1), "pieces_s": round(after, 1),
                       "speedup": round(before / after, 2)})
        print(json.dumps(rounds[-1]), flush=True)
    result = {"model": args.model, "per_style": args.per_style, "formats": formats, "cpu": cpu_model(),
              "median_speedup": statistics.median(r["speedup"] for r in rounds), "rounds": rounds,
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
