"""Melody representations side by side at the demo's budget: the same corpus, split, model and steps.

For each tokenizer: preprocess the corpus with it, train the demo's LSTM for ``--steps`` steps
(Ray Train), then compare

* validation bits per *note* (bits/token times scored tokens per note, per style), so that
  tokenizations of different lengths compare, against the 5-gram of the same tokens;
* ``--n-per-style`` unfiltered samples per style (``musicgen evaluate --model``, all models in
  one report): scale consistency, pitch-class entropy and pitch range against the real style,
  and style fidelity by the project's classifier.

    python tools/compare_representations.py --corpus artifacts/demo/corpus --work /tmp/rep \\
        --tokenizers events keyed --steps 400 --out /tmp/rep/compare.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from collections import Counter

import numpy as np

from musicgen import storage
from musicgen.config import PreprocessConfig, TrainConfig
from musicgen.data import shards
from musicgen.data.collate import windows
from musicgen.data.preprocess import run_preprocess
from musicgen.demo import DEMO_LSTM
from musicgen.evaluation.report import EvaluateConfig, run_evaluation
from musicgen.runtime import init_ray
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.tokenizers.base import scored_positions
from musicgen.training.trainer import run_training

SHOWN = ("scale_consistency", "pitch_class_entropy", "pitch_range")


def tokens_per_note(data: str, max_len: int) -> dict[str, float]:
    """Scored validation tokens per note, per style and overall ("all")."""
    tokenizer = tokenizer_from_dict(shards.read_vocab(data))
    table = shards.read_split(data, "val", ("tokens", "style"))
    scored, notes = Counter(), Counter()
    column = table.column("tokens").combine_chunks()
    values, offsets = column.values.to_numpy().astype(np.int64), column.offsets.to_numpy()
    for sequence, pitches, style in zip(column.to_pylist(), tokenizer.pitch_sequences(values, offsets),
                                        table.column("style").to_pylist()):
        n = sum(len(scored_positions(w)) for w in windows(sequence, max_len))
        for key in (style, "all"):
            scored[key] += n
            notes[key] += len(pitches)
    return {k: scored[k] / notes[k] for k in scored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="artifacts/demo/corpus")
    parser.add_argument("--work", required=True)
    parser.add_argument("--tokenizers", nargs="+", default=["events", "keyed"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("-m", dest="model_options", action="append", default=[],
                        help="a model setting over the demo's (key=value, e.g. hidden_size=256); repeatable")
    parser.add_argument("--tag", default="", help="prefix of the run names (to keep runs of other settings apart)")
    parser.add_argument("--n-per-style", type=int, default=40)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    init_ray()
    model_config = {**DEMO_LSTM, **{k: json.loads(v) for k, v in (o.split("=", 1) for o in args.model_options)}}
    results, artifacts = {}, []
    for name in args.tokenizers:
        data = storage.join(args.work, f"shards-{name}")
        if not storage.exists(storage.join(data, shards.VOCAB_FILE)):
            run_preprocess(PreprocessConfig(inputs=(args.corpus,), output=data, tokenizer=name,
                                            style_from=storage.join(args.corpus, "corpus.csv")))
        started = time.perf_counter()
        config = TrainConfig(data=data, name=f"rep-{args.tag}{name}", storage=storage.join(args.work, "runs"),
                             model="lstm", model_config=model_config, max_steps=args.steps, epochs=1000,
                             lr=args.lr, batch_size=args.batch_size, eval_every_steps=max(1, args.steps // 4))
        summary = run_training(config)
        ratio = tokens_per_note(data, config.max_len)
        model_bits = summary["val_bits_per_token"]
        results[name] = {
            "train_seconds": round(time.perf_counter() - started, 1),
            "tokens_per_note": ratio,
            "bits_per_note": {s: model_bits[s] * ratio[s] for s in ratio if s in model_bits},
            "ngram_bits_per_note": {s: summary["ngram_bits_per_token"][s] * ratio[s]
                                    for s in ratio if s in summary["ngram_bits_per_token"]},
        }
        artifacts.append(summary["artifact"])
        print(name, json.dumps(results[name], indent=1))

    report = run_evaluation(EvaluateConfig(models=tuple(artifacts), data=storage.join(args.work, "shards-events"),
                                           out=storage.join(args.work, f"report-{args.tag}"),
                                           n_per_style=args.n_per_style))
    for name, model in zip(args.tokenizers, report["models"]):
        results[name]["style_fidelity"] = model["style_fidelity"]
        results[name]["metrics"] = {s: {m: {k: v[m][k] for k in ("generated_mean", "real_mean")} for m in SHOWN}
                                    for s, v in ((s, p["metrics"]) for s, p in model["per_style"].items())}
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    machine = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")),
                   platform.processor())
    storage.write_json(args.out, {"machine": machine, "date": time.strftime("%Y-%m-%d"), "steps": args.steps,
                                  "lr": args.lr, "batch_size": args.batch_size, "model_config": model_config,
                                  "results": results})
    styles = sorted(results[args.tokenizers[0]]["bits_per_note"])
    print(f"\nbits per note (model / 5-gram), {args.steps} steps, {machine}")
    print("| style | " + " | ".join(args.tokenizers) + " |")
    for s in styles:
        cells = [f"{results[n]['bits_per_note'][s]:.3f} / {results[n]['ngram_bits_per_note'][s]:.3f}"
                 for n in args.tokenizers]
        print(f"| {s} | " + " | ".join(cells) + " |")
    print("\nsamples (generated / real): " + ", ".join(SHOWN))
    for s in [s for s in styles if s != "all"]:
        cells = []
        for n in args.tokenizers:
            m = results[n]["metrics"][s]
            cells.append(" ".join(f"{m[k]['generated_mean']:.2f}/{m[k]['real_mean']:.2f}" for k in SHOWN))
        print(f"| {s} | " + " | ".join(cells) + " |")
    print("\nstyle fidelity: " + ", ".join(f"{n} {results[n]['style_fidelity']}" for n in args.tokenizers))


if __name__ == "__main__":
    main()
