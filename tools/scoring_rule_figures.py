"""Validation bits/token of a model and the n-gram baseline under the old and the new scoring rule.

    python tools/scoring_rule_figures.py --model pretrained --data SHARDS [--max-len 256]

Old (before the one scoring rule): the model scored on the first ``max_len + 1`` tokens of each
validation melody, the n-gram on whole melodies without windows (and the training loss also scored
the style token). New: both score whole melodies cut into the same windows (``windows``).
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from musicgen.data.collate import Collate, windows
from musicgen.data.shards import read_split
from musicgen.models import load_artifact
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.training.loop import evaluate
from musicgen.training.ngram import StyleNgramBaseline


def model_bits(model, vocab: dict, rows: list, batch_size: int = 64) -> dict:
    collate = Collate(vocab, max_len=10**6)
    rows = sorted(rows, key=lambda r: len(r[0]))
    batches = [collate.collate([w for w, _ in rows[i : i + batch_size]], [s for _, s in rows[i : i + batch_size]])
               for i in range(0, len(rows), batch_size)]
    metrics = evaluate(model, batches, tokenizer_from_dict(vocab).styles)
    return {k.split("/", 1)[1] if "/" in k else "all": v for k, v in metrics.items() if k.startswith("val_bits")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-len", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, meta = load_artifact(args.model)
    vocab = meta.tokenizer
    val, train = read_split(args.data, "val"), read_split(args.data, "train")
    melodies = list(zip(val.column("tokens").to_pylist(), val.column("style").to_pylist()))
    first = [(seq[: args.max_len + 1], style) for seq, style in melodies]
    windowed = [(w, style) for seq, style in melodies for w in windows(seq, args.max_len)]
    ngram = StyleNgramBaseline(5, len(vocab["vocab"])).fit(train.column("tokens").to_pylist(),
                                                          train.column("style").to_pylist())
    figures = {
        "old: model on first windows": model_bits(model, vocab, first),
        "old: 5-gram on whole melodies": ngram.bits_per_token(*zip(*melodies)),
        "new: model on whole melodies in windows": model_bits(model, vocab, windowed),
        "new: 5-gram on the same windows": ngram.bits_per_token(*zip(*windowed)),
        "scored tokens": {"first windows": sum(len(w) - 2 for w, _ in first),
                          "whole melodies": sum(len(s) - 2 for s, _ in melodies)},
    }
    print(json.dumps({k: {s: round(v, 3) if isinstance(v, float) and math.isfinite(v) else v for s, v in d.items()}
                      for k, d in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
