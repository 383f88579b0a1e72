import math
import random

import pytest

from musicgen.training.ngram import KneserNey, StyleNgramBaseline


def test_probabilities_sum_to_one_for_seen_and_unseen_contexts():
    rng = random.Random(0)
    seqs = [[1, 5] + [rng.randint(6, 11) for _ in range(30)] + [2] for _ in range(40)]
    model = KneserNey(4, vocab_size=12).fit(seqs)
    for context in ([1, 5, 7], [8, 9, 10], [3, 3, 3], []):
        assert sum(model.prob(context, t) for t in range(12)) == pytest.approx(1.0, abs=1e-9)


def test_learns_a_deterministic_pattern_and_beats_uniform():
    seqs = [[1, 3] + [4, 5, 6, 7] * 10 + [2] for _ in range(20)]
    model = StyleNgramBaseline(5, vocab_size=10).fit(seqs, ["a"] * 20)
    bits = model.bits_per_token(seqs[:2], ["a", "a"])
    assert bits["all"] < 0.2 < math.log2(10)
    assert set(bits) == {"all", "a"}


def test_unknown_style_falls_back_to_uniform():
    model = StyleNgramBaseline(3, vocab_size=8).fit([[1, 3, 4, 5, 2]], ["a"])
    assert model.bits_per_token([[1, 3, 4, 5, 2]], ["b"])["b"] == pytest.approx(3.0)

