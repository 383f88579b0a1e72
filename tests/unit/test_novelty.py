"""The interval n-gram index: exact shared runs, transposition invariance, growth, and a brute-force check."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.evaluation.novelty import IntervalIndex, SharedRun, pitch_intervals
from musicgen.music.melody import Melody, Note
from tests.conftest import random_melody


def melody_of(pitches) -> Melody:
    return Melody(tuple(Note(int(p), 6 * i, 6) for i, p in enumerate(pitches)))


def random_walk(rng: random.Random, n: int, low: int = 40, high: int = 90) -> list[int]:
    pitch, out = rng.randint(low + 10, high - 10), []
    for _ in range(n):
        pitch = min(high, max(low, pitch + rng.choice([-5, -3, -2, -1, 1, 2, 4, 7])))
        out.append(pitch)
    return out


def brute_force(query, references) -> int:
    """The longest common run of consecutive intervals, by dynamic programming over every pair."""
    q = pitch_intervals(query)
    best = 0
    for ref in references:
        r = pitch_intervals(ref)
        run = np.zeros(len(r) + 1, dtype=int)
        for a in q:
            run[1:] = np.where(r == a, run[:-1] + 1, 0)
            best = max(best, int(run.max(initial=0)))
    return best


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(7)
    return [melody_of(random_walk(rng, rng.randint(20, 80))) for _ in range(200)]


def test_transposed_copy_of_twenty_intervals_is_found(corpus):
    index = IntervalIndex.build(corpus, [f"ref{i}" for i in range(len(corpus))], min_run=8)
    source = [n.pitch for n in corpus[123].notes][5:26]  # 21 notes: 20 intervals
    rng = random.Random(1)
    query = random_walk(rng, 15, 70, 95) + [p - 5 for p in source] + random_walk(rng, 15, 20, 45)
    run = index.longest_shared_run(melody_of(query))
    assert run.id == "ref123" and run.length >= 20
    assert run.length == brute_force(query, [corpus[123]])


def test_unrelated_melody_reports_nothing(corpus):
    index = IntervalIndex.build(corpus, [str(i) for i in range(len(corpus))], min_run=8)
    unrelated = melody_of([60 + (i * 13) % 11 * 3 for i in range(60)])  # leaps the references never take
    assert index.longest_shared_run(unrelated) == SharedRun(0, None)
    assert index.longest_shared_run(melody_of([60, 62, 64])) == SharedRun(0, None)  # shorter than one gram


def grown_index(melodies, ids, min_run: int) -> IntervalIndex:
    """An index grown melody by melody (with its window set), as a catalog's is."""
    index = IntervalIndex(min_run=min_run)
    for melody, id in zip(melodies, ids):
        index.add(melody, id)
    return index


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.sampled_from([IntervalIndex.build, grown_index]))
def test_run_length_matches_brute_force(seed, min_run, make_index):
    rng = random.Random(seed)
    # a small interval alphabet, so runs of every length occur by chance
    refs = [[60 + sum(rng.choice([-2, 0, 2]) for _ in range(i)) for i in range(rng.randint(0, 40))] for _ in range(6)]
    query = [60 + sum(rng.choice([-2, 0, 2]) for _ in range(i)) for i in range(rng.randint(0, 40))]
    run = make_index(refs, [str(i) for i in range(len(refs))], min_run=min_run).longest_shared_run(query)
    expected = brute_force(query, refs)
    if expected >= min_run:
        assert run.length == expected
        assert brute_force(query, [refs[int(run.id)]]) == expected
    else:
        assert run == SharedRun(0, None)


def test_growing_index_finds_what_a_built_one_finds_and_pickles(corpus):
    built = IntervalIndex.build(corpus, [str(i) for i in range(len(corpus))], min_run=6)
    grown = IntervalIndex(min_run=6)
    for i, m in enumerate(corpus):
        grown.add(m, str(i))
    assert len(grown) == len(built) == len(corpus)
    assert len(grown._segments) < 12  # merged as it grew, not one segment per melody
    rng = random.Random(3)
    for _ in range(20):
        source = [n.pitch for n in rng.choice(corpus).notes]
        start = rng.randrange(0, len(source) - 12)
        query = random_walk(rng, 10) + [p + 3 for p in source[start : start + 12]] + random_walk(rng, 10)
        assert grown.longest_shared_run(query) == built.longest_shared_run(query)
    restored = pickle.loads(pickle.dumps(grown))
    assert restored.longest_shared_run(corpus[17]) == SharedRun(len(corpus[17].notes) - 1, "17")


@pytest.mark.parametrize("min_run", [1, 6, 8, 9, 12, 16, 17, 23])
def test_grown_index_finds_a_run_of_exactly_min_run(corpus, min_run):
    # the window set of a grown index must never hide a run as long as min_run, however it splits into grams
    index = grown_index(corpus, [str(i) for i in range(len(corpus))], min_run)
    source = [n.pitch for n in corpus[42].notes]
    copied = [p + 1 for p in source[3 : 3 + min_run + 1]]  # min_run intervals, transposed
    query = [10, 100, 11] + copied + [110, 12, 111]  # leaps no random walk takes: the run cannot extend
    assert index.longest_shared_run(query).length == min_run == brute_force(query, corpus)


def test_catalog_use_finds_a_near_duplicate_added_earlier():
    rng = random.Random(5)
    catalog = IntervalIndex(min_run=8)
    first = random_melody(rng, n_notes=40)
    catalog.add(first, "a")
    catalog.add(random_melody(rng, n_notes=40), "b")
    variant = [n.pitch + 2 for n in first.notes[:30]] + [40, 90, 41]
    assert catalog.longest_shared_run(variant) == SharedRun(29, "a")


def test_bad_arguments():
    with pytest.raises(ValueError):
        IntervalIndex(min_run=0)
    with pytest.raises(ValueError):
        IntervalIndex.build([[60, 62]], ["a", "b"])
