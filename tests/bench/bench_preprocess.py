"""Preprocessing throughput: the Ray Data job at 1 and 2 CPUs against a naive loop, in one run.

The naive baseline is what one would write first: a single-process loop that
parses each file with pretty_midi and tokenizes it with the same tokenizer
(same track picking, quantisation and tokens). Ratios, not absolute numbers,
are what to compare across machines.

Each Ray job runs twice per CPU count: with N CPUs declared to Ray alone,
where Ray's own processes (driver, raylet, GCS, object store) may still use
the machine's other cores, and pinned, with the whole cluster confined to N
cores by CPU affinity (what a machine or container with N CPUs gives); and on
two kinds of cluster: one already running (``ray start``, as jobs submitted
with ``ray job submit`` find it) and a fresh one per job (see ``ray_job``;
``ray stop --force`` ends each running cluster, so run this on a machine with
no other Ray cluster). The naive loop runs pinned to one core. With ``--repeats N`` every measurement is
taken N times, interleaved (naive, then each job, N rounds), and the fastest
counts: this machine's speed drifts by up to ~2x over minutes, and the best of
N estimates the undisturbed time of each path alike.

    python tests/bench/bench_preprocess.py [--corpus DIR] [--repeats N] [--clusters running fresh]
                                           [--copies N] [--out FILE.json]

Without --corpus it exports the whole music21 corpus once to
artifacts/bench/corpus (a few minutes) and reuses it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from ray_cluster import running_cluster  # tests/bench/ray_cluster.py, next to this script


def naive_loop(paths: list[str], tokenizer) -> tuple[int, float]:
    """pretty_midi parse + the same melody extraction and tokenizer, one file at a time."""
    import pretty_midi

    from musicgen.music.melody import quantise
    from musicgen.music.midi import TrackNotes, pick_melody_track

    def beats(pm, seconds) -> np.ndarray:
        return np.asarray([pm.time_to_tick(t) for t in seconds]) / pm.resolution

    ok = 0
    started = time.perf_counter()
    for path in paths:
        try:
            pm = pretty_midi.PrettyMIDI(path)
            tracks = [
                TrackNotes(
                    inst.name,
                    inst.program,
                    inst.is_drum,
                    np.array([n.pitch for n in inst.notes]),
                    beats(pm, [n.start for n in inst.notes]),
                    beats(pm, [n.end for n in inst.notes]) - beats(pm, [n.start for n in inst.notes]),
                )
                for inst in pm.instruments
                if inst.notes
            ]
            track = pick_melody_track(tracks)
            ts = pm.time_signature_changes[0] if pm.time_signature_changes else None
            melody = quantise(
                track.pitches,
                track.onsets,
                track.durations,
                time_signature=(ts.numerator, ts.denominator) if ts else (4, 4),
            )
            tokenizer.encode(melody, os.path.basename(os.path.dirname(path)))
            ok += 1
        except Exception:
            pass
    return ok, time.perf_counter() - started


def linked_copies(corpus: str, copies: int) -> str:
    """A folder of ``copies`` hard-linked copies of the corpus, each under copy<i>/<style>/ (made once)."""
    out = f"{corpus.rstrip('/')}_x{copies}"
    if not os.path.exists(os.path.join(out, "done")):
        for i in range(copies):
            for folder, _, names in os.walk(corpus):
                target = os.path.join(out, f"copy{i}", os.path.relpath(folder, corpus))
                os.makedirs(target, exist_ok=True)
                for name in names:
                    if name.endswith((".mid", ".midi")) and not os.path.exists(os.path.join(target, name)):
                        os.link(os.path.join(folder, name), os.path.join(target, name))
        open(os.path.join(out, "done"), "w").close()
    return out


def ray_job(corpus: str, num_cpus: int, pinned: bool, cluster: str) -> dict:
    """The real job in a fresh driver process on a cluster of num_cpus (cluster start-up not timed).

    ``cluster="fresh"``: the driver starts its own local cluster (``ray.init(num_cpus=N)``), so
    the job also pays for Ray Data's two per-cluster system actors (a stats actor and an
    autoscaling coordinator: detached, created by the first Ray Data job a cluster runs, ~1.5 s
    of CPU each here). ``cluster="running"``: ``ray start --head`` and one tiny Ray Data job
    first, then the timed driver joins with ``ray.init(address="auto")``, as ``ray job submit``
    on a long-running cluster does; its workers still start cold (workers belong to a job).
    ``pinned``: every process (driver, raylet, GCS, workers) runs on num_cpus cores only.
    """
    cores = sorted(os.sched_getaffinity(0))[:num_cpus] if pinned else sorted(os.sched_getaffinity(0))
    pin = lambda: os.sched_setaffinity(0, cores)  # noqa: E731  (runs in each child before exec)
    address = "address='auto'" if cluster == "running" else f"num_cpus={num_cpus}"
    code = f"""
import json, tempfile, ray
from musicgen.config import PreprocessConfig
from musicgen.data.preprocess import run_preprocess
ray.init({address}, include_dashboard=False, logging_level="ERROR")
ray.data.DataContext.get_current().enable_progress_bars = False
with tempfile.TemporaryDirectory() as out:
    stats = run_preprocess(PreprocessConfig(inputs=({corpus!r},), output=out))
print("STATS" + json.dumps({{k: stats[k] for k in ("files_read", "melodies", "wall_seconds", "files_per_second")}}))
"""
    with running_cluster(num_cpus, pin) if cluster == "running" else contextlib.nullcontext():
        result = subprocess.run(
            [sys.executable, "-c", code], preexec_fn=pin, capture_output=True, text=True, check=True
        )
    line = next(text for text in result.stdout.splitlines() if text.startswith("STATS"))
    return json.loads(line[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="artifacts/bench/corpus")
    parser.add_argument("--naive-files", type=int, default=3000, help="files timed in the naive loop (it is slow)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every measurement; the fastest counts")
    parser.add_argument("--clusters", nargs="+", choices=("running", "fresh"), default=["running", "fresh"],
                        help="running: jobs join a cluster started with `ray start` (as `ray job submit` does); "
                             "fresh: each job starts its own local cluster (see ray_job)")
    parser.add_argument("--copies", type=int, default=1,
                        help="run the Ray jobs on N hard-linked copies of the corpus (N times the files; copies after "
                             "the first are dropped as duplicates), to see the fixed costs amortised")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()

    from musicgen import storage
    from musicgen.data.corpus import export_corpus
    from musicgen.tokenizers import make_tokenizer

    if not os.path.exists(os.path.join(args.corpus, "corpus.csv")):
        print(f"exporting the full music21 corpus to {args.corpus} (once)")
        export_corpus(args.corpus)
    paths = storage.list_files(args.corpus, (".mid", ".midi"))
    job_corpus = args.corpus if args.copies == 1 else linked_copies(args.corpus, args.copies)
    styles = sorted({os.path.basename(os.path.dirname(p)) for p in paths})
    tokenizer = make_tokenizer("events", styles)
    sample = paths[:: max(1, len(paths) // args.naive_files)][: args.naive_files]

    cores = sorted(os.sched_getaffinity(0))
    naive, runs, rounds = None, {}, []
    for _ in range(args.repeats):
        os.sched_setaffinity(0, cores[:1])
        ok, seconds = naive_loop(sample, tokenizer)
        os.sched_setaffinity(0, cores)
        result = {"files": len(sample), "melodies": ok, "wall_seconds": round(seconds, 2),
                  "files_per_second": round(len(sample) / seconds, 1)}
        this_round = {"naive": result}
        naive = result if naive is None or result["wall_seconds"] < naive["wall_seconds"] else naive
        for cluster in args.clusters:
            for pinned in (False, True):
                for n in (1, 2):
                    name = f"{cluster}_cluster_{n}_cpu{'s' if n > 1 else ''}{'_pinned' if pinned else ''}"
                    result = this_round[name] = ray_job(job_corpus, n, pinned, cluster)
                    if name not in runs or result["wall_seconds"] < runs[name]["wall_seconds"]:
                        runs[name] = result
        rounds.append({k: v["wall_seconds"] for k, v in this_round.items()})

    def rate(name: str) -> float:
        return runs[name]["files_per_second"]

    speedups = {}
    for cluster in args.clusters:
        for pinned in ("", "_pinned"):
            one, two = f"{cluster}_cluster_1_cpu{pinned}", f"{cluster}_cluster_2_cpus{pinned}"
            speedups[f"{one}_vs_naive"] = round(rate(one) / naive["files_per_second"], 1)
            speedups[f"{two}_vs_{one}"] = round(rate(two) / rate(one), 2)
    figures = {
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        ),
        "corpus_files": len(paths),
        "copies": args.copies,
        "repeats": args.repeats,
        "wall_seconds_of_each_round": rounds,
        "naive_pretty_midi_loop_1_core": naive,
        **runs,
        "speedups": speedups,
    }
    print("| run | files | wall s | files/s | × naive |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| naive loop (pretty_midi, 1 process, 1 core) | {naive['files']} | {naive['wall_seconds']} "
        f"| {naive['files_per_second']} | 1.0 |"
    )
    for name, r in runs.items():
        ratio = round(r["files_per_second"] / naive["files_per_second"], 1)
        print(f"| {name} | {r['files_read']} | {r['wall_seconds']} | {r['files_per_second']} | {ratio} |")
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
