"""The ``musicgen`` command: parses flags into config objects and calls the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from musicgen import __version__

DEFAULT_WORKDIR = "artifacts/demo"


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
    p.add_argument("--tokenizer", default="events", choices=["events", "abc"], help="default: events")
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
    init_ray(args.num_cpus)
    stats = run_preprocess(config)
    print(format_preprocess_summary(stats))
    if stats["melodies"] == 0:
        print("error: no usable melody came out; see errors.parquet", file=sys.stderr)
        return 1
    return 0


def format_preprocess_summary(stats: dict) -> str:
    lines = [
        f"{stats['files_read']} files read in {stats['wall_seconds']} s ({stats['files_per_second']} files/s), "
        f"{stats['files_failed']} failed, {stats['duplicates_dropped']} duplicates dropped",
        f"{'style':<16}{'train':>8}{'val':>6}{'test':>6}{'tokens':>10}",
    ]
    for style, entry in sorted(stats["per_style"].items()):
        m = entry["melodies"]
        lines.append(f"{style:<16}{m['train']:>8}{m['val']:>6}{m['test']:>6}{sum(entry['tokens'].values()):>10}")
    if stats["errors"]:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(stats["errors"].items())))
    return "\n".join(lines)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job end to end on the embedded corpus (export, preprocess, summary)",
        description="Run every stage on the corpus bundled with music21, on a local Ray cluster, into --workdir.",
    )
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"default: {DEFAULT_WORKDIR}")
    p.add_argument("--limit-per-style", type=int, default=300, help="works per style to export (default: 300)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from musicgen import storage
    from musicgen.config import PreprocessConfig
    from musicgen.data.corpus import export_corpus
    from musicgen.data.preprocess import run_preprocess
    from musicgen.runtime import init_ray

    corpus_dir = storage.join(args.workdir, "corpus")
    shards_dir = storage.join(args.workdir, "shards")
    print(f"[1/2] exporting the music21 corpus to {corpus_dir} ({args.limit_per_style} works per style)")
    export_corpus(corpus_dir, limit_per_style=args.limit_per_style, workers=args.num_cpus)
    print(f"[2/2] preprocessing with Ray Data into {shards_dir}")
    init_ray(args.num_cpus)
    stats = run_preprocess(PreprocessConfig(inputs=(corpus_dir,), output=shards_dir))
    print(format_preprocess_summary(stats))
    print(f"shards: {shards_dir}/melodies  stats: {shards_dir}/stats.json  errors: {shards_dir}/errors.parquet")
    return 0 if stats["melodies"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicgen",
        description="Learn the style of a melody corpus and generate new melodies in a requested style, on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"musicgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_corpus(sub)
    _add_preprocess(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
