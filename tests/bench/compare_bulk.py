"""Bulk jobs of several (code, model) pairs side by side, alternating, in one run.

Each entry is ``LABEL=TREE:MODEL``: ``bench_bulk.py`` of the checkout at ``TREE`` (``.`` for this
one; an older commit as a ``git worktree``) run in a subprocess with that tree first on
``PYTHONPATH`` (the Ray cluster it starts inherits it, so the actors run that code too), on
``MODEL``. Entries alternate for ``--rounds`` rounds, so a slow spell of the machine falls on all
of them; each job is set beside the classic loop timed in the same run.

    git worktree add /tmp/base 4e6435e
    python tests/bench/compare_bulk.py base=/tmp/base:pretrained now=.:pretrained --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run_one(tree: str, model: str, per_style: int, out: str) -> dict:
    tree = os.path.abspath(tree)
    env = {**os.environ, "PYTHONPATH": tree}
    cmd = [sys.executable, os.path.join(tree, "tests", "bench", "bench_bulk.py"), "--model", model,
           "--precisions", "auto", "--batch-sizes", "512", "--job-batch-sizes", "512",
           "--per-style", str(per_style), "--out", out]
    subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True)
    with open(out) as f:
        result = json.load(f)
    job = result["bulk_jobs"][0]
    return {"rounds": job["rounds"], "job_per_second": job["melodies_per_second"],
            "generated_per_second": job["generated_per_second"],
            "wall_seconds": job["wall_seconds"], "precision": job["precision"],
            "in_process_per_second": result["batched"][0]["melodies_per_second"],
            "classic_per_second": 1 / result["classic_seconds_per_melody"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entries", nargs="+", metavar="LABEL=TREE:MODEL")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-style", type=int, default=1000)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    entries = []
    for entry in args.entries:
        label, _, rest = entry.partition("=")
        tree, _, model = rest.partition(":")
        entries.append((label, tree, model or "pretrained"))
    results: dict[str, list[dict]] = {label: [] for label, _, _ in entries}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            for label, tree, model in entries:
                results[label].append(run_one(tree, model, args.per_style, os.path.join(folder, f"{label}-{r}.json")))
                print(f"round {r + 1} {label}: {results[label][-1]}", flush=True)
    first = entries[0][0]
    print("| entry | job melodies/s, each round | in-process, batch 512 | classic loop | job ÷ classic loop "
          f"(median) | job ÷ {first}'s job (median) |")
    print("|---|---|---|---|---:|---:|")
    for label, _, model in entries:
        rows = results[label]
        ratio = statistics.median(x["job_per_second"] / x["classic_per_second"] for x in rows)
        against = statistics.median(x["job_per_second"] / y["job_per_second"] for x, y in zip(rows, results[first]))
        jobs, inproc, classic = (", ".join(format(x[key], spec) for x in rows) for key, spec in
                                 (("job_per_second", ".1f"), ("in_process_per_second", ".1f"),
                                  ("classic_per_second", ".2f")))
        print(f"| {label} ({model}, {rows[0]['precision']}) | {jobs} | {inproc} | {classic} | {ratio:.1f}x "
              f"| {against:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
