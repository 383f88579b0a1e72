"""Sampling tunes with form: one loop for every prompt length against one loop per length, in one run.

A formed tune's later sections are sampled with the tune so far as the prompt, a different length in
every row. The sampler reads them all in one loop (a longer prompt's rest a token a step); before,
it ran one loop per prompt length, i.e. per tune's candidates. The baseline here is that grouping,
rebuilt around the same ``_sample_group``, so both paths make the same tunes (checked). Rounds
alternate the two paths (this machine's speed drifts by up to ~2x over minutes); the median of the
per-round ratios is the figure.

    python tests/bench/bench_form.py [--model pretrained] [--style irish_folk] [--form AABB]
                                     [--n 64] [--rounds 3] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from machine import cpu_model  # tests/bench/machine.py, next to this script

import musicgen.sampling.sampler as sampler
from musicgen.sampling import MelodyGenerator
from musicgen.sampling.cli_generate import make_requests


def per_length(model, tokenizer, requests, device="cpu", open_on_a_note=None):
    """The grouping before one loop took every length: a loop per (guidance, prompt length)."""
    open_on_a_note = list(open_on_a_note or [False] * len(requests))
    model.eval()
    requests = [sampler.with_guidance(model, r) for r in requests]
    prompts = [tokenizer.prompt(r.style, r.primer, r.time_signature) for r in requests]
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, (ids, _) in enumerate(prompts):
        groups.setdefault((len(ids), requests[i].guidance != 1), []).append(i)
    result: list[list[int]] = [[] for _ in requests]
    for rows in groups.values():
        sampled = sampler._sample_group(model, tokenizer, [requests[i] for i in rows], [prompts[i][0] for i in rows],
                                        [prompts[i][1] for i in rows], torch.device(device),
                                        [open_on_a_note[i] for i in rows])
        for i, tokens in zip(rows, sampled):
            result[i] = tokens
    return result


def timed(generator, requests, grouping) -> tuple[float, list]:
    import musicgen.sampling.form as form

    original = form.sample_tokens
    form.sample_tokens = grouping
    try:
        began = time.perf_counter()
        out = generator.generate(requests)
        return time.perf_counter() - began, out
    finally:
        form.sample_tokens = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--style", default="irish_folk")
    parser.add_argument("--form", default="AABB")
    parser.add_argument("--section-bars", type=int, default=8)
    parser.add_argument("--n", type=int, default=64, help="tunes per call (default: 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = MelodyGenerator.from_artifact(args.model, device="cpu", precision=args.precision)
    requests = make_requests(args.style, args.n, 0, form=args.form, section_bars=args.section_bars,
                             form_mix=generator.meta.form_mix(args.style))
    timed(generator, requests[:4], sampler.sample_tokens)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        old_s, old = timed(generator, requests, per_length)
        new_s, new = timed(generator, requests, sampler.sample_tokens)
        assert [g.tokens for g in old] == [g.tokens for g in new], "both groupings make the same tunes"
        rounds.append({"per_length_s": round(old_s, 3), "one_loop_s": round(new_s, 3),
                       "speedup": round(old_s / new_s, 2)})
        print(json.dumps(rounds[-1]), flush=True)
    result = {"model": args.model, "style": args.style, "form": args.form, "section_bars": args.section_bars,
              "n": args.n, "threads": args.threads, "precision": args.precision, "cpu": cpu_model(),
              "tunes_per_s_per_length": round(args.n / statistics.median(r["per_length_s"] for r in rounds), 2),
              "tunes_per_s_one_loop": round(args.n / statistics.median(r["one_loop_s"] for r in rounds), 2),
              "median_speedup": statistics.median(r["speedup"] for r in rounds), "rounds": rounds,
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
