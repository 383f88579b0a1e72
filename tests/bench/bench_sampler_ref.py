"""The sampler of a git ref (the baseline) against the working tree's, side by side in one run.

For changes inside the sampling loop (the cell step, the guidance mix, the token choice), where
the baseline is simply the code before. The ref is checked out into a temporary worktree; each
round runs both in fresh subprocesses, alternating which goes first (this machine's speed drifts
by up to ~2x over minutes), and times, with the precision each side's ``auto`` picks:

- ``serve``: ``MelodyGenerator.generate`` of one melody at a time (what a Serve replica does at
  concurrency 1), ``--n`` melodies of ``--style``, median milliseconds a melody;
- ``bulk``: one call of ``--batch`` melodies over all styles (what a bulk actor does), melodies/s.

Both sides sample the same requests; the script reports whether their tokens came out the same.

    python tests/bench/bench_sampler_ref.py [--ref HEAD] [--model pretrained] [--n 40] [--batch 512]
                                            [--rounds 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_form import cpu_model  # beside this script

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import hashlib, json, statistics, sys, time
import torch
torch.set_num_threads(1)
from musicgen.sampling import MelodyGenerator
from musicgen.sampling.sampler import SampleRequest
model, style, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {}
one = MelodyGenerator.from_artifact(model, device="cpu", precision="auto", batch_sizes=(1,))
for seed in range(3):
    one.generate([SampleRequest(style, 10_000 + seed)])  # warm-up
digest, times, tokens = hashlib.sha256(), [], 0
for seed in range(n):
    t0 = time.perf_counter()
    melody = one.generate([SampleRequest(style, seed)])[0]
    times.append(1000 * (time.perf_counter() - t0))
    digest.update(bytes(str(melody.tokens), "ascii"))
    tokens += len(melody.tokens)
out["serve"] = {"precision": one.precision, "median_ms": statistics.median(times), "tokens": tokens / n,
                "digest": digest.hexdigest()[:16]}
if batch:
    bulk = MelodyGenerator.from_artifact(model, device="cpu", precision="auto", batch_sizes=(batch,))
    styles = bulk.styles
    requests = [SampleRequest(styles[i % len(styles)], i) for i in range(batch)]
    bulk.generate(requests[:32])
    t0 = time.perf_counter()
    melodies = bulk.generate(requests)
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256(bytes(str([m.tokens for m in melodies]), "ascii"))
    out["bulk"] = {"precision": bulk.precision, "melodies_per_s": batch / seconds, "digest": digest.hexdigest()[:16]}
print("RESULT " + json.dumps(out))
"""


def run_side(root: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "MUSICGEN_PRECISION_CACHE": "off"}
    done = subprocess.run([sys.executable, "-c", CHILD, args.model, args.style, str(args.n), str(args.batch)],
                          cwd=root, env=env, capture_output=True, text=True, check=True)
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the baseline's git ref (default: HEAD)")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--style", default="german_folk")
    parser.add_argument("--n", type=int, default=40, help="melodies sampled one at a time per round")
    parser.add_argument("--batch", type=int, default=512, help="melodies of the bulk call (0: skip it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.ref], cwd=REPO, check=True,
                       capture_output=True)
        try:
            rounds = []
            for r in range(args.rounds):
                sides = [("baseline", base), ("candidate", REPO)]
                result = {}
                for name, root in sides if r % 2 == 0 else sides[::-1]:
                    result[name] = run_side(root, args)
                rounds.append(result)
                b, c = result["baseline"], result["candidate"]
                line = (f"round {r + 1}: serve {b['serve']['median_ms']:.1f} -> {c['serve']['median_ms']:.1f} ms "
                        f"({b['serve']['median_ms'] / c['serve']['median_ms']:.2f}x)")
                if args.batch:
                    line += (f"; bulk {b['bulk']['melodies_per_s']:.1f} -> {c['bulk']['melodies_per_s']:.1f} "
                             f"melodies/s ({c['bulk']['melodies_per_s'] / b['bulk']['melodies_per_s']:.2f}x)")
                print(line, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)

    def median(side, part, key):
        return statistics.median(r[side][part][key] for r in rounds)

    summary = {"cpu": cpu_model(), "ref": args.ref, "rounds": rounds,
               "serve_speedup": statistics.median(
                   r["baseline"]["serve"]["median_ms"] / r["candidate"]["serve"]["median_ms"] for r in rounds)}
    print(f"\n| path | baseline ({args.ref}) | candidate | speed-up (median of rounds) | same tokens |")
    print("|---|---:|---:|---:|---|")
    last = rounds[-1]
    print(f"| one melody at a time ({args.style}, {last['candidate']['serve']['tokens']:.0f} tokens, "
          f"{last['baseline']['serve']['precision']} / {last['candidate']['serve']['precision']}), median ms | "
          f"{median('baseline', 'serve', 'median_ms'):.1f} | {median('candidate', 'serve', 'median_ms'):.1f} | "
          f"{summary['serve_speedup']:.2f}x | "
          f"{'yes' if last['baseline']['serve']['digest'] == last['candidate']['serve']['digest'] else 'no'} |")
    if args.batch:
        summary["bulk_speedup"] = statistics.median(
            r["candidate"]["bulk"]["melodies_per_s"] / r["baseline"]["bulk"]["melodies_per_s"] for r in rounds)
        print(f"| one call of {args.batch} ({last['baseline']['bulk']['precision']} / "
              f"{last['candidate']['bulk']['precision']}), melodies/s | "
              f"{median('baseline', 'bulk', 'melodies_per_s'):.1f} | "
              f"{median('candidate', 'bulk', 'melodies_per_s'):.1f} | "
              f"{summary['bulk_speedup']:.2f}x | "
              f"{'yes' if last['baseline']['bulk']['digest'] == last['candidate']['bulk']['digest'] else 'no'} |")
    print(f"CPU: {cpu_model()}; torch threads 1; load average {os.getloadavg()[0]:.1f} at the end")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
