"""What classifier-free guidance costs: the batched sampler with and without it, side by side.

A guided row runs twice through the model (with and without its style), in
the same batch, so its cost is the model's cost at twice the batch size: little
at batch 1, where a step is memory-bound, about double where it is compute-bound.

    python tests/bench/bench_guidance.py --model artifacts/runs/full-lstm-v3-cfg/model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def rate(generator, guidance: float, batch_size: int, bars: int, calls: int) -> float:
    """Melodies per second of ``generator.generate`` at this guidance and batch size."""
    from musicgen.sampling import SampleRequest

    styles = generator.styles
    generator.generate([SampleRequest(styles[0], 0, bars=bars, guidance=guidance)])  # warm-up
    seconds, melodies = 0.0, 0
    for call in range(calls):
        requests = [SampleRequest(styles[i % len(styles)], 5000 + call * batch_size + i, bars=bars, guidance=guidance)
                    for i in range(batch_size)]
        started = time.perf_counter()
        melodies += len(generator.generate(requests))
        seconds += time.perf_counter() - started
    return melodies / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/runs/full-lstm-v3-cfg/model")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()

    from musicgen.sampling import MelodyGenerator

    torch.set_num_threads(args.threads)
    generator = MelodyGenerator.from_artifact(args.model, device="cpu")
    if not generator.guidable:
        raise SystemExit(f"{args.model} was trained without style dropout: nothing to compare")
    rows = []
    for b in args.batch_sizes:
        calls = max(2, 32 // b)
        plain, guided = rate(generator, 1.0, b, args.bars, calls), rate(generator, args.guidance, b, args.bars, calls)
        rows.append({"batch_size": b, "unguided_per_second": plain, "guided_per_second": guided,
                     "cost": plain / guided})
    table = ["| batch | unguided melodies/s | guided melodies/s | guided cost (× time) |", "|---:|---:|---:|---:|"]
    table += [f"| {r['batch_size']} | {r['unguided_per_second']:.2f} | {r['guided_per_second']:.2f} | {r['cost']:.2f} |"
              for r in rows]
    notes = (f"{args.bars}-bar melodies, guidance {args.guidance:g}; model {args.model} ({generator.model_version}); "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {platform.machine()}, "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print("\n".join(table))
    print(notes)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "notes": notes, "table": table}, f, indent=2)


if __name__ == "__main__":
    main()
