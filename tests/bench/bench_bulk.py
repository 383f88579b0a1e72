"""Bulk generation throughput: the batched sampler and the Ray Data bulk job against the naive loop, in one run.

Two naive loops, one melody at a time, one token per model call, the next token
drawn with ``torch.multinomial`` from the softmax (no grammar, no batching): the
classic char-RNN loop, calling the ``nn.LSTM`` module per token, and the same loop
through ``model.step``, whose single-token path is a fused ``lstm_cell`` (~3x faster).
It runs for as many tokens as the batched melodies hold on average, so both make
melodies of the same length. Then:

(i)  ``MelodyGenerator.generate`` in this process, one call per batch, at a few batch sizes,
     with fp32 weights and with int8 weights (``--precision``; the naive loops use fp32);
(ii) ``run_bulk`` end to end on a local Ray cluster (one single-threaded actor per CPU, the
     reference index of the whole corpus, copy and duplicate filters, files written), accepted
     melodies per second of wall time, Ray Data start-up and indexing included. ``--cluster running``
     (the default): the jobs join a cluster started with ``ray start``, as ``ray job submit`` finds
     it; ``fresh``: each job starts its own.

The in-process paths use ``--threads`` torch threads (default 1: per core, as each actor runs).
The naive loops run before and after the batched paths and the faster of the two
times counts (this machine's speed drifts by up to ~2x over minutes: the
conservative choice keeps the ratios from being flattered by a slow spell).

(iii) with ``--rounds N``: N more jobs (the first precision and job batch size), each with the
     classic loop timed right before and right after it (the faster counts), so every round's
     ratio compares the job with the loop in the same minutes; their median is the steadier figure.

    python tests/bench/bench_bulk.py [--model artifacts/runs/full-lstm/model] [--per-style 200] [--rounds 3]
                                     [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from ray_cluster import running_cluster  # tests/bench/ray_cluster.py, next to this script


def module_step(model, tokens, style, cache):
    """What char-RNN code calls per token: the ``nn.LSTM`` module on one time step (LSTM and GAN generator)."""
    lm = getattr(model, "generator", model)
    logits, cache = lm.run_embeddings(lm.tok_emb(tokens), style, cache)
    return logits[:, -1], cache


@torch.inference_mode()
def naive_melody(step, tokenizer, style: str, n_tokens: int, seed: int) -> list[int]:
    """One melody the char-RNN way: step, softmax, multinomial, feed the token back."""
    rng = torch.Generator().manual_seed(seed)
    style_index = torch.tensor([tokenizer.styles.index(style)])
    logits, cache = step(torch.tensor([[tokenizer.bos_id, tokenizer.style_token(style)]]), style_index, None)
    out = []
    for _ in range(n_tokens):
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=rng)
        out.append(int(token))
        logits, cache = step(token, style_index, cache)
    return out


def naive_loop(step, generator, n_melodies: int, n_tokens: int) -> float:
    """Seconds per melody."""
    naive_melody(step, generator.tokenizer, generator.styles[0], 8, 0)  # warm-up
    started = time.perf_counter()
    for i in range(n_melodies):
        naive_melody(step, generator.tokenizer, generator.styles[i % len(generator.styles)], n_tokens, i)
    return (time.perf_counter() - started) / n_melodies


def batched(generator, batch_size: int, bars: int, calls: int) -> dict:
    from musicgen.sampling import SampleRequest

    styles = generator.styles
    generator.generate([SampleRequest(styles[0], 0, bars=bars)])  # warm-up
    seconds, tokens = 0.0, []
    for call in range(calls):
        requests = [SampleRequest(styles[i % len(styles)], 1000 + call * batch_size + i, bars=bars)
                    for i in range(batch_size)]
        started = time.perf_counter()
        out = generator.generate(requests)
        seconds += time.perf_counter() - started
        tokens += [len(g.tokens) - 2 for g in out]  # sampled tokens, without <bos> STYLE
    return {"batch_size": batch_size, "melodies": len(tokens), "melodies_per_second": len(tokens) / seconds,
            "tokens_per_melody": statistics.mean(tokens)}


def bulk_job(model: str, per_style: int, batch_size: int, cpus: int, precision: str, cluster: str) -> dict:
    """One ``run_bulk`` in this process. ``cluster="running"`` joins the cluster ``running_cluster`` started, as a
    job submitted with ``ray job submit`` does; ``"fresh"`` starts a local cluster of ``cpus`` for this job alone,
    which then also pays for Ray Data's two per-cluster system actors (~1.5 s of CPU each here)."""
    import ray

    from musicgen.catalog.bulk import run_bulk
    from musicgen.config import BulkConfig

    if cluster == "running":
        ray.init(address="auto", logging_level="ERROR")
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    try:
        with tempfile.TemporaryDirectory() as out:
            return run_bulk(BulkConfig(model=model, out=out, per_style=per_style, batch_size=batch_size,
                                       precision=precision))
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained", help="model artifact (default: the shipped one)")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256, 512])
    parser.add_argument("--naive-melodies", type=int, default=10)
    parser.add_argument("--per-style", type=int, default=1000, help="melodies per style of the Ray Data job")
    parser.add_argument("--job-batch-sizes", type=int, nargs="+", default=[512], help="melodies per sampling call "
                        "of the Ray Data job (one job per size and precision)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process paths")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the Ray cluster")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"],
                        help="of the batched paths and the job: fp32, bf16, int8, or auto (the fastest here, measured)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="more jobs, each between two classic loops of its own, for per-round ratios")
    parser.add_argument("--cluster", choices=("running", "fresh"), default="running",
                        help="running: the jobs join one cluster started with `ray start` (as `ray job submit` "
                             "finds it); fresh: each job starts its own local cluster")
    parser.add_argument("--in-process-only", action="store_true", help="skip the Ray Data jobs (no cluster, no "
                        "reference shards needed): the naive loops and the batched sampler only")
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()

    from musicgen.sampling import MelodyGenerator
    from musicgen.sampling.precision import PrecisionChoice, cpu_summary

    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    baseline = MelodyGenerator.from_artifact(args.model, device="cpu", precision="fp32")
    model = baseline.model.eval()

    def classic_loop(n_tokens: int) -> float:
        return naive_loop(lambda *a: module_step(model, *a), baseline, args.naive_melodies, n_tokens)

    def naive_loops(n_tokens: int) -> tuple[float, float]:
        return classic_loop(n_tokens), naive_loop(model.step, baseline, args.naive_melodies, n_tokens)

    # the naive loops sample as many tokens as the batched melodies hold on average
    tokens = round(batched(baseline, 64, args.bars, calls=1)["tokens_per_melody"])
    before = naive_loops(tokens)
    rows = []
    for precision in args.precisions:
        for b in args.batch_sizes:  # auto: timed at each batch size, as the job does at its own
            generator = MelodyGenerator.from_artifact(args.model, device="cpu", precision=precision, batch_sizes=(b,))
            label = f"auto: {generator.precision}" if precision == "auto" else precision
            rows.append({**batched(generator, b, args.bars, calls=max(1, 8 // b)), "precision": label,
                         "precision_choice": generator.precision_choice.as_dict()})
    after = naive_loops(tokens)
    classic_seconds, naive_seconds = min(before[0], after[0]), min(before[1], after[1])
    generator = baseline
    classic_rate, naive_rate = 1 / classic_seconds, 1 / naive_seconds
    rounds = []
    in_cluster = args.cluster == "running" and not args.in_process_only
    with running_cluster(args.cpus) if in_cluster else contextlib.nullcontext():
        jobs = [bulk_job(args.model, args.per_style, b, args.cpus, p, args.cluster)
                for p in args.precisions for b in args.job_batch_sizes if not args.in_process_only]

        for _ in range(0 if args.in_process_only else args.rounds):
            before_job = classic_loop(tokens)
            job = bulk_job(args.model, args.per_style, args.job_batch_sizes[0], args.cpus, args.precisions[0],
                           args.cluster)
            classic = 1 / min(before_job, classic_loop(tokens))
            rounds.append({"classic_per_second": round(classic, 2), "job_per_second": job["melodies_per_second"],
                           "ratio": round(job["melodies_per_second"] / classic, 1),
                           "job_wall_seconds": job["wall_seconds"]})

    def ratios(rate: float) -> str:
        return f"{rate / classic_rate:.1f}x | {rate / naive_rate:.1f}x"

    table = [
        "| path | batch | melodies | melodies/s | s/melody | vs classic char-RNN loop | vs naive loop, fused step |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| classic char-RNN loop (`nn.LSTM` module per token + `torch.multinomial`) | 1 | {args.naive_melodies} | "
        f"{classic_rate:.2f} | {classic_seconds:.3f} | {ratios(classic_rate)} |",
        f"| naive loop through `model.step` (fused `lstm_cell`) + `torch.multinomial` | 1 | {args.naive_melodies} | "
        f"{naive_rate:.2f} | {naive_seconds:.3f} | {ratios(naive_rate)} |",
    ]
    for r in rows:
        table.append(f"| batched sampler, in-process, {r['precision']} | {r['batch_size']} | {r['melodies']} | "
                     f"{r['melodies_per_second']:.2f} | {1 / r['melodies_per_second']:.4f} | "
                     f"{ratios(r['melodies_per_second'])} |")
    table += [
        f"| Ray Data bulk job, end to end ({job['actors']} actors), {job['precision_choice']['requested']}: "
        f"{job['precision']} | {job['batch_size']} | "
        f"{job['accepted_this_run']} | {job['melodies_per_second']:.2f} | {1 / job['melodies_per_second']:.4f} | "
        f"{ratios(job['melodies_per_second'])} |" for job in jobs]
    if rounds:
        table += ["", "| round | classic loop melodies/s | job melodies/s | job ÷ classic loop |",
                  "|---:|---:|---:|---:|"]
        table += [f"| {i + 1} | {r['classic_per_second']} | {r['job_per_second']} | {r['ratio']}x |"
                  for i, r in enumerate(rounds)]
        table.append(f"| median | | | **{statistics.median(r['ratio'] for r in rounds):.1f}x** |")
    print("\n".join(table))
    notes = (f"CPU: {cpu_summary()}. {args.bars}-bar melodies, {tokens} sampled tokens each on average; "
             f"model {args.model} ({generator.model_name}, {generator.model_version}); torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads in-process; {platform.machine()}, {os.cpu_count()} CPUs, "
             f"load average {load_before:.1f} at the start. " + " ".join(
                 f"Bulk job ({job['precision']}): {job['generated_this_run']} generated at "
                 f"{job['generated_per_second']}/s while sampling, {job['wall_seconds']} s wall including "
                 f"{job['index_seconds']} s to index {job['reference_melodies']} corpus melodies; "
                 f"rejected {job['rejected']}; sampling {PrecisionChoice(**job['precision_choice']).describe()}."
                 for job in jobs))
    print(notes)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"naive_loops_before_and_after": [before, after], "classic_seconds_per_melody": classic_seconds,
                       "naive_seconds_per_melody": naive_seconds, "tokens_per_melody": tokens, "batched": rows,
                       "bulk_jobs": jobs, "rounds": rounds, "notes": notes, "table": table}, f, indent=2)


if __name__ == "__main__":
    main()
