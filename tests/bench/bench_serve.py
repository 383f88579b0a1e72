"""Load test of the melody service on loopback: latency by concurrency, then autoscaling.

Starts a local Ray cluster and the service (all of the model's styles) on
127.0.0.1, then

1. sweeps concurrency (default 1, 4, 16) on one style with closed-loop
   clients (each sends its next request when the last one is answered):
   p50/p95/p99 latency, requests/s, errors, mean batch size, replicas. At
   concurrency 1 each request follows the same melody sampled in this
   process without Serve (the floor), so both see the machine in the same
   state: its speed drifts by up to ~2x over minutes;
2. puts sustained load on another style, whose deployment may grow to
   ``--max-replicas``, polling ``serve.status()`` every second to show its
   replicas scaling up, then stops the load and polls until they are back
   down (``--settle-seconds`` at most).

Every request asks for one 16-bar melody in all formats (JSON notes, MIDI,
ABC) with its own fixed seed. Prints markdown tables and writes JSON to --out.

    python tests/bench/bench_serve.py [--model artifacts/runs/full-lstm/model] [--out serve.json]
"""

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import platform
import statistics
import threading
import time

from musicgen.client import AsyncMusicgenClient


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def closed_loop(url: str, style: str, concurrency: int, bars: int, n_requests: int | None = None,
                      stop: threading.Event | None = None) -> dict:
    """``concurrency`` workers send requests back to back until ``n_requests`` are done or ``stop`` is set.
    Request i uses seed i."""
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: list[str] = []
    counter = iter(range(n_requests)) if n_requests is not None else itertools.count()

    async def worker(client: AsyncMusicgenClient) -> None:
        for i in counter:
            if stop is not None and stop.is_set():
                return
            started = time.perf_counter()
            try:
                (melody,) = await client.melodies(style, bars=bars, seed=i)
            except Exception as exc:  # noqa: BLE001 - a load test counts every kind of failure
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            latencies.append(time.perf_counter() - started)
            batch_sizes.append(melody["batch_size"])

    started = time.perf_counter()
    async with AsyncMusicgenClient(url, retries=0, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    ms = [1000 * x for x in latencies]
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        **latency_stats(ms),
        "requests_per_second": round(len(latencies) / seconds, 2),
        "mean_batch_size": round(statistics.fmean(batch_sizes), 2) if batch_sizes else None,
        "seconds": round(seconds, 1),
    }


def latency_stats(ms: list[float]) -> dict:
    """p50/p95/p99 and mean of latencies in milliseconds (None when there are none)."""
    if not ms:
        return dict.fromkeys(("p50_ms", "p95_ms", "p99_ms", "mean_ms"))
    return {"p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1), "mean_ms": round(statistics.fmean(ms), 1)}


class ModelAlone:
    """The floor under the c=1 latency: a request sampled and rendered in this process, no Serve, no HTTP."""

    def __init__(self, model: str, style: str, bars: int, precision: str):
        import torch

        from musicgen.sampling import MelodyGenerator
        from musicgen.serving.app import ServeConfig

        torch.set_num_threads(1)  # as in a replica
        # as a replica chooses (auto: timed at batch 1 and ServeConfig's max_batch_size)
        self.generator = MelodyGenerator.from_artifact(model, device="cpu", precision=precision,
                                                       batch_sizes=(1, ServeConfig.max_batch_size))
        print(f"model alone: sampling {self.generator.precision_choice.describe()}", flush=True)
        self.style, self.bars = style, bars
        for seed in range(2):  # warm-up
            self(seed)

    def __call__(self, seed: int) -> float:
        """Milliseconds for the melody of this seed in JSON, MIDI and ABC."""
        from musicgen.sampling import SampleRequest
        from musicgen.serving.app import render

        started = time.perf_counter()
        (generated,) = self.generator.generate([SampleRequest(self.style, seed=seed, bars=self.bars)])
        render(generated, ("json", "midi", "abc"), self.generator, 1)
        return 1000 * (time.perf_counter() - started)


def interleaved_c1(url: str, alone: ModelAlone, n_requests: int) -> tuple[dict, dict]:
    """Concurrency 1 through Serve, each request right after the same melody sampled in this process,
    so both see the same machine (its speed drifts by up to ~2x over minutes)."""
    from musicgen.client import MusicgenClient

    served, local, batch_sizes = [], [], []
    with MusicgenClient(url, retries=0, timeout=120) as client:
        for seed in range(n_requests):
            local.append(alone(seed))
            started = time.perf_counter()
            (melody,) = client.melodies(alone.style, bars=alone.bars, seed=seed)
            served.append(1000 * (time.perf_counter() - started))
            batch_sizes.append(melody["batch_size"])
    seconds = sum(served) / 1000
    return ({"requests": n_requests, **latency_stats(local)},
            {"concurrency": 1, "requests": n_requests, "errors": 0, "error_examples": [], **latency_stats(served),
             "requests_per_second": round(n_requests / seconds, 2),
             "mean_batch_size": round(statistics.fmean(batch_sizes), 2), "seconds": round(seconds, 1)})


def replicas(app: str, deployment: str) -> dict[str, int]:
    from ray import serve

    states = serve.status().applications[app].deployments[deployment].replica_states
    return {str(getattr(state, "value", state)).lower(): count for state, count in states.items()}


class ReplicaPoller(threading.Thread):
    """Samples a deployment's replica states every second into ``timeline``."""

    def __init__(self, app: str, deployment: str, t0: float):
        super().__init__(daemon=True)
        self.app, self.deployment, self.t0 = app, deployment, t0
        self.timeline: list[dict] = []
        self.phase = "load"
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.timeline.append({"t": round(time.perf_counter() - self.t0, 1), "phase": self.phase,
                                  **replicas(self.app, self.deployment)})
            self.done.wait(1.0)


def scaling_run(url: str, app: str, style: str, deployment: str, concurrency: int, bars: int, load_seconds: float,
                settle_seconds: float, min_replicas: int) -> dict:
    t0 = time.perf_counter()
    poller = ReplicaPoller(app, deployment, t0)
    poller.start()
    stop = threading.Event()
    threading.Timer(load_seconds, stop.set).start()
    load = asyncio.run(closed_loop(url, style, concurrency, bars, stop=stop))
    poller.phase = "idle"
    load_end = time.perf_counter() - t0
    while time.perf_counter() - t0 < load_end + settle_seconds:
        time.sleep(1.0)
        if replicas(app, deployment).get("running", 0) <= min_replicas and poller.timeline[-1]["phase"] == "idle":
            break
    time.sleep(1.0)
    poller.done.set()
    poller.join()
    timeline = poller.timeline
    running = [(p["t"], p.get("running", 0), p["phase"]) for p in timeline]
    peak = max(r for _, r, _ in running)
    first_up = next((t for t, r, _ in running if r > min_replicas), None)
    back_down = next((t for t, r, phase in running if phase == "idle" and r <= min_replicas), None)
    return {"style": style, "deployment": deployment, "concurrency": concurrency, "load_seconds": round(load_end, 1),
            "load": load, "peak_replicas": peak, "first_scale_up_s": first_up,
            "back_to_min_s_after_load": round(back_down - load_end, 1) if back_down is not None else None,
            "timeline": timeline}


def markdown(alone: dict | None, levels: list[dict], scaling: dict) -> str:
    lines = ["| concurrency | requests | errors | p50 ms | p95 ms | p99 ms | req/s | mean batch | replicas after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if alone:
        lines.append(f"| model alone (interleaved with c=1) | {alone['requests']} | - | {alone['p50_ms']} | "
                     f"{alone['p95_ms']} | {alone['p99_ms']} | {round(1000 / alone['mean_ms'], 2)} | 1 | - |")
    for r in levels:
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | {r['requests_per_second']} | {r['mean_batch_size']} | {r['replicas_after']} |")
    load = scaling["load"]
    lines += ["", (f"Autoscaling of `{scaling['deployment']}` under {scaling['concurrency']} concurrent clients for "
                   f"{scaling['load_seconds']} s: {load['requests']} requests, {load['errors']} errors, "
                   f"{load['requests_per_second']} req/s, p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms; "
                   f"replicas {scaling['timeline'][0].get('running', 0)} -> {scaling['peak_replicas']} "
                   f"(first scale-up at {scaling['first_scale_up_s']} s), "
                   f"back to the minimum {scaling['back_to_min_s_after_load']} s after the load stopped."), "",
              "| t s | phase | running | starting/pending |", "|---:|---|---:|---:|"]
    previous = None
    for p in scaling["timeline"]:
        state = (p.get("running", 0), sum(v for k, v in p.items() if k in ("starting", "pending_migration",
                                                                            "recovering", "stopping")), p["phase"])
        if state != previous:  # only the changes
            lines.append(f"| {p['t']} | {p['phase']} | {state[0]} | {state[1]} |")
            previous = state
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained", help="model artifact (default: the shipped one)")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels (default: 1,4,16)")
    parser.add_argument("--requests", default="100,300,1000", help="requests per level (default: 100,300,1000)")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--style", default="german_folk", help="style of the concurrency sweep")
    parser.add_argument("--scale-style", default="irish_folk", help="style put under sustained load")
    parser.add_argument("--scale-concurrency", type=int, default=24)
    parser.add_argument("--max-replicas", type=int, default=3, help="for the scale style")
    parser.add_argument("--load-seconds", type=float, default=45)
    parser.add_argument("--settle-seconds", type=float, default=60)
    parser.add_argument("--port", type=int, default=18000, help="HTTP port on 127.0.0.1 (default: 18000)")
    parser.add_argument("--precision", default="auto", help="weights of the replicas: auto (the fastest here, "
                        "measured), fp32, bf16, int8")
    parser.add_argument("--alone-only", action="store_true", help="only time the model alone (no Serve), e.g. to "
                        "compare precisions")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    counts = [int(x) for x in args.requests.split(",")]
    if len(counts) != len(levels):
        parser.error("give one --requests count per --levels entry")

    import ray
    import torch
    from ray import serve

    from musicgen.sampling.precision import cpu_summary
    from musicgen.serving.app import APP_NAME, Autoscaling, ServeConfig, build_app, style_deployment_name

    alone_sampler = ModelAlone(args.model, args.style, args.bars, args.precision)
    if args.alone_only:
        alone = [alone_sampler(seed) for seed in range(counts[0])]
        print(json.dumps({"model_alone": {"requests": counts[0], **latency_stats(alone)},
                          "precision": args.precision}), flush=True)
        return
    scale = Autoscaling(min_replicas=1, max_replicas=args.max_replicas, upscale_delay_s=2, downscale_delay_s=10)
    # 0.2 CPU a replica: the five styles' first replicas and three more fit on two CPUs
    config = ServeConfig(model=args.model, port=args.port, style_autoscaling={args.scale_style: scale},
                         replica_num_cpus=0.2, auth_token_env=None, precision=args.precision)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    url = f"http://{config.host}:{config.port}"
    try:
        started = time.perf_counter()
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        startup = round(time.perf_counter() - started, 1)
        asyncio.run(closed_loop(url, args.style, 2, args.bars, n_requests=10))  # warm-up
        results, alone = [], None
        for concurrency, n in zip(levels, counts):
            if concurrency == 1:
                alone, result = interleaved_c1(url, alone_sampler, n)
                print(json.dumps({"model_alone_interleaved": alone}), flush=True)
            else:
                result = asyncio.run(closed_loop(url, args.style, concurrency, args.bars, n_requests=n))
            result["replicas_after"] = replicas(APP_NAME, style_deployment_name(args.style)).get("running", 0)
            results.append(result)
            print(json.dumps(result), flush=True)
        scaling = scaling_run(url, APP_NAME, args.scale_style, style_deployment_name(args.scale_style),
                              args.scale_concurrency, args.bars, args.load_seconds, args.settle_seconds,
                              scale.min_replicas)
    finally:
        serve.shutdown()
        ray.shutdown()
    figures = {
        "machine": f"{cpu_summary()}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"ray {ray.__version__}",
        "model": args.model, "precision": args.precision,
        "precision_choice": alone_sampler.generator.precision_choice.as_dict(), "bars": args.bars,
        "startup_seconds": startup,
        "config": {"replica_num_cpus": config.replica_num_cpus, "max_batch_size": config.max_batch_size,
                   "batch_wait_timeout_s": config.batch_wait_timeout_s,
                   "autoscaling": dataclasses.asdict(config.autoscaling),
                   "scale_style_autoscaling": dataclasses.asdict(scale)},
        "model_alone": alone, "levels": results, "scaling": scaling,
    }
    print(markdown(alone, results, scaling))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
