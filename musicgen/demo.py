"""``musicgen demo``: every stage end to end on the corpus bundled with music21, its flags and its run."""

from __future__ import annotations

import argparse
import dataclasses
import os

from musicgen.config import TrainConfig
from musicgen.data.text import format_preprocess_summary
from musicgen.training.text import format_training_summary

DEFAULT_WORKDIR = "artifacts/demo"
# small enough to train for a few hundred steps within the demo's budget on two CPUs
DEMO_LSTM = {"num_layers": 2, "hidden_size": 192, "embed_dim": 128, "style_dropout": 0.1}
DEMO_TOKENIZER = "keyed"  # chosen by measurement: docs/quality.md, "Melody representation"
DEMO_STEPS = 1000  # the fewest measured that beat the 5-gram on every style with the tonal metrics near the real ones
# the rest of the demo takes 4-6 minutes on two cores: training must fit beside it in the brief's 15
DEMO_TRAIN_MINUTES = 9.0


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
                   help="time budget of the training steps: a few steps are timed here first, and a CPU too slow "
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
    from musicgen.config import BulkConfig, PreprocessConfig
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
        cpus_per_worker=cores, max_steps=args.train_steps, epochs=1000,
    )
    train_config = fit_budget(train_config, runs_dir, args.train_minutes * 60)
    print(f"[3/5] training a small LSTM ({DEMO_LSTM}) with Ray Train for {train_config.max_steps} steps "
          f"into {runs_dir}/demo-lstm")
    summary = run_training(train_config, on_report=lambda m: print(format_report(m, train_config.max_steps),
                                                                   flush=True))
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


def fit_budget(config: TrainConfig, runs_dir: str, budget_s: float) -> TrainConfig:
    """``config`` with at most as many steps as fit ``budget_s`` at the pace timed here, reports every
    quarter of them. The plan is kept beside the run, so a rerun that resumes it keeps its schedule."""
    from musicgen import storage
    from musicgen.training.pace import measure_pace, steps_within

    plan_path = storage.join(runs_dir, "demo-plan.json")
    plan = storage.read_json(plan_path) if storage.exists(plan_path) else {}
    if plan.get("most") == config.max_steps and plan.get("budget_s") == budget_s:
        print(f"      the plan of the run being resumed ({plan_path}): {plan['steps']} steps")
    else:
        pace = measure_pace(config)
        steps = steps_within(budget_s, pace, config.max_steps)
        plan = {"steps": steps, "most": config.max_steps, "budget_s": budget_s, "threads": pace.threads,
                "seconds_per_step": round(pace.seconds_per_step, 3)}
        fits = ("fit" if steps == config.max_steps
                else f"are what fits (of {config.max_steps}; a faster CPU trains them all)")
        print(f"      {pace.seconds_per_step:.2f} s a step here ({pace.tokens_per_second:,.0f} tokens/s on "
              f"{pace.threads} thread(s)): {steps} steps {fits} in {budget_s / 60:g} minutes")
        storage.write_json(plan_path, plan)
    return dataclasses.replace(config, max_steps=plan["steps"], eval_every_steps=max(1, plan["steps"] // 4))
