"""The ``musicgen`` command: parses flags into config objects and calls the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from musicgen import __version__, demo, generate_command, runtime, stopping
from musicgen.config import DEFAULT_TOP_P, PRECISIONS
from musicgen.generate_command import GUIDANCE_HELP, MODEL_HELP, PRECISION_HELP
from musicgen.pretrained import PRETRAINED
from musicgen.studio import command as studio_command

# preprocessing runs Ray Data tasks of one CPU each (what ``run_preprocess`` requires again of a cluster)
PREPROCESS_NEEDS = ({"CPU": 1}, "preprocessing (Ray Data tasks of one CPU each)")


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser("corpus", help="the real corpus bundled with music21")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    export = corpus_sub.add_parser(
        "export",
        help="export the music21 corpus as MIDI, one folder per style, with corpus.csv",
        description=(
            "Export the real music bundled with music21 (Bach chorales, Essen folk songs, O'Neill's and "
            "Ryan's Irish tunes, Palestrina) as MIDI files in <out>/<style>/, plus <out>/corpus.csv. "
            "A rerun skips what already exists; a score that fails to parse is logged and skipped."
        ),
    )
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--styles", nargs="+", help="styles to export (default: all)")
    export.add_argument("--limit-per-style", type=int, help="at most N works per style (default: all)")
    export.add_argument("--workers", type=int, help="parallel processes (default: CPU count)")
    export.set_defaults(run=_run_corpus_export)


def _run_corpus_export(args: argparse.Namespace) -> int:
    from musicgen.data.corpus import export_corpus

    summary = export_corpus(args.out, styles=args.styles, limit_per_style=args.limit_per_style, workers=args.workers)
    print(json.dumps(summary, indent=2))
    return 0


def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    from musicgen.tokenizers import TOKENIZERS

    p = sub.add_parser(
        "preprocess",
        help="Ray Data job: music files -> Parquet token shards",
        description=(
            "Read MIDI (.mid/.midi) and notation (.abc/.xml/.mxl/.musicxml/.krn, converted with music21) "
            "from local folders or s3:// prefixes in parallel with Ray Data; pick each file's melody, "
            "quantise it, tokenize it, split train/val/test by source piece and write zstd Parquet shards "
            "(<output>/melodies/split=*/), vocab.json, stats.json and errors.parquet. Bad files are recorded "
            "in errors.parquet and skipped; the job fails only if no melody at all comes out. "
            "For S3-compatible stores set AWS_ENDPOINT_URL (and the usual AWS credentials)."
        ),
    )
    p.add_argument("--input", dest="inputs", action="append", required=True, help="folder or s3:// prefix; repeatable")
    p.add_argument("--output", required=True, help="output folder or s3:// prefix")
    p.add_argument("--tokenizer", default="events", choices=sorted(TOKENIZERS),
                   help="events: absolute pitches (default); keyed: events written in C after a KEY token; "
                        "abc: characters of ABC text (docs/tokens.md)")
    p.add_argument(
        "--style-from",
        default="dirname",
        help="'dirname' (a file's style is its folder's name; default) or a CSV with columns path, style[, work]",
    )
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--min-notes", type=int, default=8, help="shorter melodies are recorded as errors")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (ignored when joining RAY_ADDRESS)")
    p.set_defaults(run=_run_preprocess)


def _run_preprocess(args: argparse.Namespace) -> int:
    from musicgen.config import PreprocessConfig
    from musicgen.data.preprocess import run_preprocess
    from musicgen.data.text import format_preprocess_summary
    from musicgen.runtime import init_ray

    config = PreprocessConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        tokenizer=args.tokenizer,
        style_from=args.style_from,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        min_notes=args.min_notes,
        num_cpus=args.num_cpus,
    )
    init_ray(args.num_cpus, *PREPROCESS_NEEDS)  # --num-cpus 0 is refused before Ray starts
    stats = run_preprocess(config)
    print(format_preprocess_summary(stats))
    if stats["melodies"] == 0:
        print("error: no usable melody came out; see errors.parquet", file=sys.stderr)
        return 1
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="Ray Train job: train an LSTM, GAN or Transformer on the token shards",
        description=(
            "Train a style-conditioned melody model with Ray Train on N CPU or GPU workers, streaming the "
            "shards with Ray Data. Each report (every epoch, or every --eval-every-steps) appends train/val "
            "loss, validation bits/token (overall and per style) and tokens/s to <storage>/<name>/metrics.jsonl, "
            "redraws <storage>/<name>/loss.png and checkpoints (best 3 by validation loss). Rerunning the same "
            "command resumes from the latest checkpoint; a failed worker is restarted up to --max-failures times. "
            "At the end the best checkpoint becomes the model artifact <storage>/<name>/model/, and its validation "
            "bits/token are printed next to a Kneser-Ney n-gram baseline's."
        ),
    )
    p.add_argument("--data", required=True, help="output folder of `musicgen preprocess` (local or s3://)")
    p.add_argument("--model", choices=["lstm", "gan", "transformer"], help="default: lstm")
    p.add_argument("--name", required=True, help="run name: checkpoints and the model go to <storage>/<name>/")
    p.add_argument("--storage", required=True, help="folder or s3:// prefix for runs")
    p.add_argument("--workers", type=int, help="Ray Train workers (default: 1)")
    p.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker, bf16 autocast")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="with --max-steps: train fewer steps where they would not fit this many minutes at the pace "
                        "of the run's own first steps (the learning-rate schedule decays over the steps that fit)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-len", type=int, help="training window in tokens")
    p.add_argument("--lr", type=float)
    p.add_argument("--eval-every-steps", type=int, help="report and checkpoint every N steps (default: every epoch)")
    p.add_argument("--config", help="YAML file with any of the settings above and model_config (sizes)")
    p.add_argument(
        "--model-option", "-m", action="append", default=[], metavar="KEY=VALUE",
        help="model size setting, e.g. -m hidden_size=128 -m num_layers=2 (repeatable)",
    )
    p.add_argument(
        "--init-from", metavar="ARTIFACT",
        help="fine-tune: start from this model artifact (same model kind and vocabulary, or an LSTM as a GAN's "
             "generator); -m options override its config, e.g. -m style_dropout=0.1 to add classifier-free "
             "guidance to a trained model",
    )
    p.add_argument("--distill-guidance", type=float, metavar="W", help="with --init-from: learn its melodies "
                   "guided at W, so sampling at W (then the default) runs one pass a melody instead of two")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (ignored when joining RAY_ADDRESS)")
    p.set_defaults(run=_run_train)


def train_config_from_args(args: argparse.Namespace):
    """Settings from --config, overridden by flags given on the command line."""
    import yaml

    from musicgen.config import TrainConfig, from_dict

    values = {}
    if args.config:
        with open(args.config) as f:
            values = yaml.safe_load(f) or {}
    for flag in ("data", "model", "name", "storage", "workers", "use_gpu", "epochs", "max_steps", "batch_size",
                 "max_len", "lr", "eval_every_steps", "init_from", "distill_guidance"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.time_budget is not None:
        values["time_budget_s"] = args.time_budget * 60
    model_config = dict(values.get("model_config") or {})
    for option in args.model_option:
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"--model-option wants KEY=VALUE, got {option!r}")
        model_config[key] = yaml.safe_load(value)
    values["model_config"] = model_config
    return from_dict(TrainConfig, values)


def _run_train(args: argparse.Namespace) -> int:
    from musicgen.runtime import init_ray
    from musicgen.training.text import format_training_summary
    from musicgen.training.trainer import check_model_options, format_report, resource_needs, run_training

    config = train_config_from_args(args)
    check_model_options(config)  # a bad -m key=value: exit 2 here, before Ray starts, not in every worker
    init_ray(args.num_cpus, *resource_needs(config))  # a local cluster gets the CPUs the workers need
    summary = run_training(config, on_report=lambda m: print(format_report(m), flush=True))
    print(format_training_summary(summary))
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve melodies over HTTP with Ray Serve (one autoscaling deployment per style)",
        description=(
            "Start Ray Serve (on the cluster in RAY_ADDRESS, or a local one) with a FastAPI ingress and one "
            "deployment per style, and serve until Ctrl-C: GET /v1/styles, POST /v1/styles/{style}/melodies, "
            "GET /healthz, API docs at /docs. --config is a YAML file of ServeConfig settings (styles, "
            "autoscaling and style_autoscaling, max_batch_size, batch_wait_timeout_s, replica_num_cpus, "
            "auth_token_env, ...); flags win over it. When the variable named by auth_token_env "
            "(default MUSICGEN_API_TOKEN) is set, requests need 'Authorization: Bearer <token>'."
        ),
    )
    p.add_argument("--model", help=MODEL_HELP + " (or `model:` in --config)")
    p.add_argument("--config", help="YAML file of serving settings")
    p.add_argument("--host", help="HTTP host (default: 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default: 8000)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (ignored when joining RAY_ADDRESS)")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from musicgen.serving.app import load_config, run_server

    run_server(load_config(args.config, model=args.model, host=args.host, port=args.port), num_cpus=args.num_cpus)
    return 0


def _add_bulk(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bulk",
        help="Ray Data job: a catalog of N new melodies per style, copies of the corpus filtered out",
        description=(
            "Generate --per-style accepted melodies in each style with a pool of Ray Data actors (batched "
            "sampling, one GPU each with --use-gpu) and write <out>/<style>/<id>.mid and .abc (and .wav), then "
            "<id>.json, plus <out>/manifest.parquet, rejected.parquet and summary.json. Style s's melodies use "
            "seeds --seed, --seed + 1, ... and are judged in that order: a melody sharing --copy-threshold "
            "consecutive pitch intervals (in any key) with any melody of the corpus the model was trained on "
            "(all splits, or --reference) is rejected as a copy, one repeating or sharing "
            "--near-duplicate-threshold intervals with a melody already accepted as a near duplicate. Ids are "
            "sha256(model version:style:seed), so reruns name the same melodies. A killed run resumes when "
            "rerun with the same settings; settings that change which melodies come out cannot change "
            "in between. Submit with `ray job submit -- python -m pipelines.bulk_generate ...`."
        ),
    )
    p.add_argument("--model", default=PRETRAINED, help=MODEL_HELP)
    p.add_argument("--out", required=True, help="catalog folder, local or s3://")
    p.add_argument("--per-style", type=int, required=True, help="accepted melodies per style")
    p.add_argument("--styles", nargs="+", help="styles to generate (default: every style of the model)")
    p.add_argument("--bars", type=int, help="length in bars of a melody without a form (default: 16)")
    p.add_argument("--form", help="sections as letters (AABB), or 'auto': each melody draws a form and section length "
                   "from those of its style's training melodies (default: none)")
    p.add_argument("--section-bars", type=int, help="bars per section of --form (default: 8)")
    p.add_argument("--variation", type=float, help="share of a returning section's last bars sampled anew (default: 0)")
    p.add_argument("--style-form", dest="style_forms", action="append", metavar="STYLE=FORM[:BARS]",
                   help="one style's own form in place of --form (repeatable): irish_folk=AABB:8, "
                   "renaissance=none, german_folk=auto; BARS defaults to --section-bars")
    p.add_argument("--loop", action="store_true", default=None, help="every melody a seamless loop")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: 1.0)")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens; 0 = off (default: 0)")
    p.add_argument("--top-p", type=float, help=f"nucleus sampling mass; 1 = off (default: {DEFAULT_TOP_P})")
    p.add_argument("--guidance", type=float, help=GUIDANCE_HELP)
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--seed", type=int, help="first seed of every style (default: 0)")
    p.add_argument("--format", dest="formats", type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
                   help="comma-separated, out of mid,abc,wav (default: mid,abc; wav needs fluidsynth and a soundfont)")
    p.add_argument("--copy-threshold", type=int,
                   help="reject melodies sharing this many consecutive pitch intervals with a corpus melody "
                   "(default: 16)")
    p.add_argument("--near-duplicate-threshold", type=int,
                   help="reject melodies sharing this many with an accepted melody of their style (default: 16)")
    p.add_argument("--min-notes", type=int, help="reject shorter melodies (default: 8)")
    p.add_argument("--min-style-prob", type=float,
                   help="reject melodies the model's style classifier gives their style less than this probability "
                   "(reason off_style, counted apart; default: 0, off). Every accepted melody's style_prob and "
                   "top_style are in the manifest either way. A filtered catalog is no measure of style fidelity")
    p.add_argument("--reference",
                   help="preprocessed shards to check copies against (default: the data the model was trained on)")
    p.add_argument("--batch-size", type=int, help="melodies per sampling call (default: 512)")
    p.add_argument("--actors", type=int, help="generator actors (default: one per CPU, or per GPU, of the cluster)")
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction,
                   help="one GPU per actor (default: when the cluster has GPUs)")
    p.add_argument("--max-rounds", type=int, help="give up after this many rounds of generation (default: 8)")
    p.add_argument("--checkpoint-every", type=int,
                   help="save progress after about this many melodies; a rerun redoes at most these (default: 256)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (ignored when joining RAY_ADDRESS)")
    p.add_argument("--inject-kill-after", type=int, help=argparse.SUPPRESS)  # chaos testing of resume
    p.set_defaults(run=_run_bulk)


def bulk_config_from_args(args: argparse.Namespace):
    """The ``BulkConfig`` of ``musicgen bulk``'s flags (unset flags keep the config's defaults)."""
    import dataclasses

    from musicgen.config import BulkConfig, from_dict

    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(BulkConfig)}
    pairs = [pair.split("=", 1) for pair in values["style_forms"] or ()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("--style-form takes STYLE=FORM[:BARS], e.g. irish_folk=AABB:8")
    values["style_forms"] = dict(pairs) or None
    return from_dict(BulkConfig, {k: v for k, v in values.items() if v is not None})


def _run_bulk(args: argparse.Namespace) -> int:
    from musicgen.catalog.bulk import actor_needs, format_summary, run_bulk
    from musicgen.runtime import init_ray

    config = bulk_config_from_args(args)
    init_ray(args.num_cpus, *actor_needs(config.actors or 1, config.use_gpu))  # room for --actors on a local cluster
    if not args.verbose:  # our own bar counts the melodies; Ray Data's would draw beside it
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
    print(format_summary(run_bulk(config)))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="does a model (or a catalog) sound like its styles, and is it new? writes a report",
        description=(
            "Judge generated melodies against the preprocessed corpus at --data: style fidelity (a classifier "
            "trained on the corpus's train split, its accuracy on the test split beside it), objective metrics "
            "of generated vs real melodies per style (overlap and KL of their distributions), novelty (longest "
            "run of intervals shared with any corpus melody, exact copies) and the model's validation bits/token "
            "next to the n-gram baseline's. Several --model values are compared side by side; --generated judges "
            "a bulk catalog folder instead of sampling, with a Ray Data actor pool (also as "
            "`ray job submit ... -- python -m pipelines.evaluate ...`). Writes report.md, report.json, PNG plots "
            "and (with fluidsynth) WAV previews to --out."
        ),
    )
    p.add_argument("--model", action="append", default=[],
                   help="model artifact (repeat to compare models; default: the shipped model, 'pretrained')")
    p.add_argument("--data", required=True, help="preprocessed shards (the corpus the models learned)")
    p.add_argument("--out", required=True, help="report folder, local or s3://")
    p.add_argument("--generated", help="a bulk catalog folder (with manifest.parquet) to judge instead of sampling")
    p.add_argument("--n-per-style", type=int, default=50, help="melodies sampled per style and model (default: 50)")
    p.add_argument("--bars", type=int, default=16, help="bars per sampled melody (default: 16)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P,
                   help=f"nucleus sampling mass; 1 = off (default: {DEFAULT_TOP_P})")
    p.add_argument("--guidance", type=float, help=GUIDANCE_HELP)
    p.add_argument("--copy-threshold", type=int, default=16,
                   help="intervals shared with a corpus melody that count as a copy (default: 16)")
    p.add_argument("--actors", type=int,
                   help="with --generated: Ray Data actors judging the catalog's melodies "
                   "(default: the cluster's CPUs)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (ignored when joining RAY_ADDRESS)")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from musicgen.evaluation.report import EvaluateConfig, run_evaluation
    from musicgen.evaluation.text import format_summary

    if args.model and args.generated:
        raise ValueError("give --model (one or more) or --generated, not both")
    models = tuple(args.model) or ((PRETRAINED,) if not args.generated else ())
    if args.generated:  # a catalog is judged by a Ray Data actor pool
        from musicgen.evaluation.report import judge_needs
        from musicgen.runtime import init_ray

        init_ray(args.num_cpus, *judge_needs(args.actors))  # a local cluster gets room for --actors
    report = run_evaluation(EvaluateConfig(
        models=models, data=args.data, out=args.out, generated=args.generated, n_per_style=args.n_per_style,
        bars=args.bars, temperature=args.temperature, top_p=args.top_p, guidance=args.guidance,
        copy_threshold=args.copy_threshold, actors=args.actors))
    print(format_summary(report))
    print(f"report: {args.out}/report.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicgen",
        description="Learn the style of a melody corpus and generate new melodies in a requested style, on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"musicgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and Ray's own log lines and worker output on the terminal (without it "
                             "they go to the Ray session's log folder, named in one line)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_corpus(sub)
    _add_preprocess(sub)
    _add_train(sub)
    demo.add_parser(sub)
    generate_command.add_parser(sub)
    _add_serve(sub)
    _add_bulk(sub)
    _add_evaluate(sub)
    studio_command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    runtime.set_verbose(args.verbose)  # without --verbose Ray's own log lines go to a file (runtime.py)
    try:
        return stopping.run(lambda: args.run(args))  # SIGTERM/SIGINT: a clean stop, exit 143/130
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        # a KeyError's str() is its message in quotes: print the message itself
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
