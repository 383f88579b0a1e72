"""Several models' batched sampler in-process, one thread, alternating: melodies/s at batch 512 (the
bulk job's calls) and one melody at a time (Serve's), each model at its default guidance.

    python tests/bench/bench_models_inprocess.py TEACHER pretrained [--precision int8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--precision", default="int8", help="fp32, bf16 or int8 (the same for every model)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from musicgen.sampling import MelodyGenerator, SampleRequest
    from musicgen.sampling.precision import cpu_summary

    generators = {m: MelodyGenerator.from_artifact(m, device="cpu", precision=args.precision) for m in args.models}
    for g in generators.values():
        g.generate([SampleRequest(g.styles[0], 0, bars=16)])  # warm-up
    rates: dict[str, dict[str, list[float]]] = {m: {"512": [], "1": []} for m in args.models}
    for r in range(args.rounds):
        for m, g in generators.items():
            requests = [SampleRequest(g.styles[i % len(g.styles)], 1000 * r + i, bars=16) for i in range(512)]
            started = time.perf_counter()
            g.generate(requests)
            rates[m]["512"].append(512 / (time.perf_counter() - started))
            started = time.perf_counter()
            for i in range(20):
                g.generate([SampleRequest(g.styles[i % len(g.styles)], 5000 + 1000 * r + i, bars=16)])
            rates[m]["1"].append(20 / (time.perf_counter() - started))
    print(f"CPU: {cpu_summary()}; {args.precision}, one thread, 16-bar melodies, each model's default guidance")
    print("| model | guidance | batch 512, melodies/s | one at a time, melodies/s |\n|---|---:|---|---|")
    for m, g in generators.items():
        guidance = g.generate([SampleRequest(g.styles[0], 0, bars=2)])[0].request.guidance
        print(f"| {m} | {guidance:g} | {', '.join(f'{x:.1f}' for x in rates[m]['512'])} "
              f"| {', '.join(f'{x:.1f}' for x in rates[m]['1'])} |")


if __name__ == "__main__":
    main()
