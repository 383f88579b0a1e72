"""Objective metrics on hand-built melodies whose answers are known."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings

from musicgen.evaluation.metrics import (
    bar_self_similarity,
    compare_sets,
    duration_histogram,
    groove_consistency,
    interval_histogram,
    kl_divergence,
    melody_metrics,
    note_density,
    overlapping_area,
    pitch_class_entropy,
    pitch_range,
    repetition_ratio,
    scale_consistency,
)
from musicgen.music.melody import Melody, Note
from tests.conftest import melodies, random_melody


def line(pitches, duration=12, time_signature=(4, 4)) -> Melody:
    return Melody(tuple(Note(p, duration * i, duration) for i, p in enumerate(pitches)), time_signature)


C_MAJOR = line([60, 62, 64, 65, 67, 69, 71, 72])


def test_scale_and_pitch_class_figures():
    assert scale_consistency(C_MAJOR) == 1.0
    assert scale_consistency(line([60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71])) == pytest.approx(7 / 12)
    assert pitch_class_entropy(line([67] * 9)) == 0.0
    assert pitch_class_entropy(C_MAJOR) == pytest.approx(-(6 / 8 * math.log2(1 / 8) + 2 / 8 * math.log2(2 / 8)))
    assert pitch_class_entropy(line(range(60, 72))) == pytest.approx(math.log2(12))
    assert pitch_range(C_MAJOR) == 12


def test_interval_and_duration_histograms():
    h = interval_histogram(line([60, 62, 64, 40]))
    assert h.sum() == pytest.approx(1.0)
    assert h[12 + 2] == pytest.approx(2 / 3) and h[0] == pytest.approx(1 / 3)  # the -24 leap is clipped to -12
    d = duration_histogram(Melody((Note(60, 0, 6), Note(62, 6, 6), Note(64, 12, 24))))
    assert d[2] == pytest.approx(2 / 3) and d[7] == pytest.approx(1 / 3)  # eighths, one half note


def test_rhythm_and_repetition():
    four_bars = line([60, 62, 64, 65] * 4)  # quarters: 4 notes a bar, every bar the same
    assert note_density(four_bars) == 4.0
    assert groove_consistency(four_bars) == 1.0
    assert repetition_ratio(four_bars) == 1.0
    assert np.allclose(bar_self_similarity(four_bars), 1.0)
    # bar 2 plays eighths instead of quarters: its onsets differ at 4 of 48 positions from each neighbour
    mixed = Melody(tuple(Note(60, i * 12, 12) for i in range(4)) + tuple(Note(62, 48 + 6 * i, 6) for i in range(8))
                   + tuple(Note(60, 96 + 12 * i, 12) for i in range(4)))
    assert groove_consistency(mixed) == pytest.approx(1 - 4 / 48)
    assert repetition_ratio(mixed) == pytest.approx(0.5)  # bar 3 repeats bar 1, bar 2 is new
    assert repetition_ratio(line(range(60, 76))) == 0.0


def test_set_distances():
    rng = random.Random(0)
    a = [rng.gauss(0.5, 0.1) for _ in range(500)]
    same = [rng.gauss(0.5, 0.1) for _ in range(500)]
    far = [rng.gauss(3.0, 0.1) for _ in range(500)]
    assert overlapping_area(a, same, (0, 4)) > 0.8
    assert overlapping_area(a, far, (0, 4)) == 0.0
    assert kl_divergence(a, same, (0, 4)) < 0.1 < kl_divergence(a, far, (0, 4))
    melodies = [random_melody(rng) for _ in range(30)]
    report = compare_sets(melodies, melodies)
    assert set(report) == set(melody_metrics(melodies[0]))
    assert all(v["overlap"] == pytest.approx(1.0) and v["kl_real_generated"] == pytest.approx(0.0)
               for v in report.values())


@settings(max_examples=200, deadline=None)
@given(melodies())
def test_scale_consistency_is_the_best_share_of_notes_in_one_scale(melody):
    """The matrix form against its definition: each of the 24 scales tried in turn."""
    from musicgen.music.keys import MAJOR_SCALE, MINOR_SCALE

    pcs = np.array([n.pitch % 12 for n in melody.notes])
    best = max(float(np.isin(pcs, [(tonic + s) % 12 for s in scale]).mean())
               for scale in (MAJOR_SCALE, MINOR_SCALE) for tonic in range(12))
    assert scale_consistency(melody) == best
