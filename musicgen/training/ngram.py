"""An interpolated Kneser–Ney n-gram baseline over the same tokens and splits as the neural models.

One model per style (the neural models are told the style too), interpolated
down to a uniform distribution over the vocabulary so no token has zero
probability. Following Chen & Goodman (1998), with one absolute discount per
order estimated as D = n1 / (n1 + 2 n2) from the counts of counts.

Bits per token are measured on the same windows and targets as the neural
models (``musicgen.tokenizers.targets``): every token after the style token,
``<eos>`` included.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from musicgen.tokenizers.base import scored_positions


class KneserNey:
    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order = order
        self.vocab_size = vocab_size
        # counts[k][(context, token)] for contexts of length k: raw counts at the highest
        # order, continuation counts below it
        self.counts: list[Counter] = [Counter() for _ in range(order)]
        self.context_totals: list[Counter] = [Counter() for _ in range(order)]
        self.context_types: list[Counter] = [Counter() for _ in range(order)]
        self.discounts = [0.75] * order

    def fit(self, sequences: Iterable[Sequence[int]]) -> KneserNey:
        top = self.order - 1
        raw: list[Counter] = [Counter() for _ in range(self.order)]
        for seq in sequences:
            seq = tuple(seq)
            for i in range(1, len(seq)):
                for k in range(0, min(i, top) + 1):
                    raw[k][(seq[i - k : i], seq[i])] += 1
        for k in range(self.order):
            if k == top:
                self.counts[k] = raw[k]
                continue
            # lower orders count distinct left extensions (continuation counts); an n-gram
            # that never has one (it sits at the start of sequences) keeps its raw count
            continuation = Counter((context[1:], token) for context, token in raw[k + 1])
            self.counts[k] = Counter({key: continuation.get(key) or c for key, c in raw[k].items()})
        for k in range(self.order):
            for (context, _), c in self.counts[k].items():
                self.context_totals[k][context] += c
                self.context_types[k][context] += 1
            n1 = sum(1 for c in self.counts[k].values() if c == 1)
            n2 = sum(1 for c in self.counts[k].values() if c == 2)
            self.discounts[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75
        return self

    def prob(self, context: Sequence[int], token: int) -> float:
        context = tuple(context[-(self.order - 1) :]) if self.order > 1 else ()
        p = 1.0 / self.vocab_size
        for k in range(0, len(context) + 1):
            ctx = context[len(context) - k :]
            total = self.context_totals[k].get(ctx, 0)
            if total == 0:
                continue
            d = self.discounts[k]
            c = self.counts[k].get((ctx, token), 0)
            p = max(c - d, 0.0) / total + d * self.context_types[k][ctx] / total * p
        return p


class StyleNgramBaseline:
    """One Kneser–Ney model per style, fitted on the training split."""

    def __init__(self, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.models: dict[str, KneserNey] = {}

    def fit(self, sequences: Iterable[Sequence[int]], styles: Iterable[str]) -> StyleNgramBaseline:
        by_style: dict[str, list] = defaultdict(list)
        for seq, style in zip(sequences, styles):
            by_style[style].append(seq)
        self.models = {s: KneserNey(self.order, self.vocab_size).fit(seqs) for s, seqs in by_style.items()}
        return self

    def nll_bits(self, window: Sequence[int], style: str) -> tuple[float, int]:
        """(total bits, number of predicted tokens) of a window's scored tokens (``scored_positions``),
        each predicted from the window's tokens before it, as the neural models see them."""
        model = self.models.get(style) or KneserNey(1, self.vocab_size).fit([])
        positions = scored_positions(window)
        bits = -sum(math.log2(model.prob(window[:i], window[i])) for i in positions)
        return bits, len(positions)

    def bits_per_token(self, sequences: Iterable[Sequence[int]], styles: Iterable[str]) -> dict[str, float]:
        """Bits per token overall (key "all") and per style."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for seq, style in zip(sequences, styles):
            bits, n = self.nll_bits(seq, style)
            for key in ("all", style):
                totals[key][0] += bits
                totals[key][1] += n
        return {k: b / n for k, (b, n) in totals.items() if n}
