"""``musicgen demo``: every stage end to end on the corpus bundled with music21, its flags and its run."""

from __future__ import annotations

import argparse
import os

from musicgen.data.text import format_preprocess_summary
from musicgen.training.text import format_training_summary

DEFAULT_WORKDIR = "artifacts/demo"
# small enough to train for a few hundred steps within the demo's budget on two CPUs
DEMO_LSTM = {"num_layers": 2, "hidden_size": 192, "embed_dim": 128, "style_dropout": 0.1}
DEMO_TOKENIZER = "keyed"  # chosen by measurement: docs/quality.md, "Melody representation"
DEMO_STEPS = 1000  # at most: where the CPU is fast enough for them in DEMO_TRAIN_MINUTES
# a few hundred steps learn most at a high rate (the cosine decays it over the steps that fit):
# docs/quality.md, "The demo's learning rate"
DEMO_LR = 8e-3
# the other stages take 5.5-6 minutes on two slow cores: the training steps fit beside them in 15
DEMO_TRAIN_MINUTES = 7.0
REPORTS_EVERY_STEPS = 200  # a line of progress, a validation and a checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    from musicgen.tokenizers import TOKENIZERS

    p = sub.add_parser(
        "demo",
        help="the main job end to end on the embedded corpus (export, preprocess, train, catalog, evaluate)",
        description=(
            "Run every stage on the corpus bundled with music21, on a local Ray cluster, into --workdir: "
            "export the corpus as MIDI, preprocess it with Ray Data, train a small LSTM with Ray Train (its "
            "validation bits/token printed next to the n-gram baseline's), write a small catalog of new melodies "
            "per style with the bulk job, and judge it: style fidelity and novelty."
        ),
    )
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"default: {DEFAULT_WORKDIR}")
    p.add_argument("--limit-per-style", type=int, default=300, help="works per style to export (default: 300)")
    p.add_argument("--train-steps", type=int, default=DEMO_STEPS,
                   help=f"LSTM training steps, at most (default: {DEMO_STEPS})")
    p.add_argument("--train-minutes", type=float, default=DEMO_TRAIN_MINUTES,
                   help="time budget of the training steps: the run times its first steps, and on a CPU too slow "
                        f"for --train-steps in this budget trains fewer (default: {DEMO_TRAIN_MINUTES:g})")
    p.add_argument("--catalog-per-style", type=int, default=40,
                   help="catalog melodies per style, judged against the real style at the end (default: 40)")
    p.add_argument("--tokenizer", default=DEMO_TOKENIZER, choices=sorted(TOKENIZERS),
                   help=f"melody representation (default: {DEMO_TOKENIZER}; docs/tokens.md)")
    p.add_argument("--num-cpus", type=int,
                   help="cores to use (default: all); training runs one worker with a thread per core, and the local "
                        "Ray cluster counts one CPU more for Ray Data to feed it")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from musicgen import storage
    from musicgen.catalog.bulk import format_summary as format_bulk_summary
    from musicgen.catalog.bulk import run_bulk
    from musicgen.config import BulkConfig, PreprocessConfig, TrainConfig
    from musicgen.data.corpus import export_corpus
    from musicgen.data.preprocess import run_preprocess
    from musicgen.evaluation.report import EvaluateConfig, run_evaluation
    from musicgen.evaluation.text import format_style_table
    from musicgen.evaluation.text import format_summary as format_evaluation_summary
    from musicgen.music.export import wav_available
    from musicgen.runtime import init_ray
    from musicgen.training.trainer import format_report, run_training

    corpus_dir = storage.join(args.workdir, "corpus")
    shards_dir = storage.join(args.workdir, "shards")
    runs_dir = storage.join(args.workdir, "runs")
    print(f"[1/5] exporting the music21 corpus to {corpus_dir} ({args.limit_per_style} works per style)")
    export_corpus(corpus_dir, limit_per_style=args.limit_per_style, workers=args.num_cpus)
    print(f"[2/5] preprocessing with Ray Data into {shards_dir}")
    cores = args.num_cpus or os.cpu_count() or 1
    init_ray(cores + 1)
    stats = run_preprocess(
        PreprocessConfig(inputs=(corpus_dir,), output=shards_dir, tokenizer=args.tokenizer,
                         style_from=storage.join(corpus_dir, "corpus.csv"))
    )
    print(format_preprocess_summary(stats))
    if not stats["melodies"]:
        return 1
    train_config = TrainConfig(
        data=shards_dir, name="demo-lstm", storage=runs_dir, model="lstm", model_config=DEMO_LSTM,
        cpus_per_worker=cores, lr=DEMO_LR, max_steps=args.train_steps, time_budget_s=args.train_minutes * 60,
        epochs=1000, eval_every_steps=REPORTS_EVERY_STEPS,
    )
    print(f"[3/5] training a small LSTM ({DEMO_LSTM}) with Ray Train into {runs_dir}/demo-lstm: up to "
          f"{args.train_steps} steps, as many as fit {args.train_minutes:g} minutes here")
    summary = run_training(train_config, on_report=lambda m: print(format_report(m), flush=True))
    catalog_dir = storage.join(args.workdir, "catalog")
    print(f"[4/5] writing {args.catalog_per_style} new melodies per style into {catalog_dir} with the bulk job")
    catalog = run_bulk(BulkConfig(model=summary["artifact"], out=catalog_dir, per_style=args.catalog_per_style,
                                  actors=cores,
                                  formats=("mid", "abc", "wav") if wav_available() else ("mid", "abc")))
    report_dir = storage.join(args.workdir, "report")
    print(f"[5/5] judging the catalog (style classifier, metrics, novelty) into {report_dir}")
    report = run_evaluation(EvaluateConfig(models=(), data=shards_dir, out=report_dir, generated=catalog_dir))
    print(f"recap: {stats['melodies']} melodies, {stats['tokens']} tokens in {shards_dir} (the table under [2/5])")
    print(format_training_summary(summary))
    print(format_bulk_summary(catalog))
    print(format_evaluation_summary(report))
    print(format_style_table(report))
    print(f"loss curves: {runs_dir}/demo-lstm/loss.png   model: {summary['artifact']}")
    listen = "listen to the .wav files, " if wav_available() else ""
    print(f"catalog: {catalog_dir}/<style>/*.mid (+ .abc) — {listen}open the MIDI in any player, or read "
          f"{report_dir}/report.md with its piano rolls")
    return 0
