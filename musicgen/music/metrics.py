"""Objective melody metrics as small pure functions (after MusPy, Dong et al. 2020, and the
set-level comparison of Yang & Lerch, "On the evaluation of generative models in music", 2018).

Each per-melody metric takes a ``Melody`` and returns a number (or a normalised
histogram); ``compare_sets`` turns the per-melody values of a generated set and a
real set into distribution distances: the overlapping area of the two
histograms (1.0: the same distribution, 0.0: disjoint) and a smoothed KL divergence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from musicgen.music.keys import MAJOR_SCALE, MINOR_SCALE
from musicgen.music.melody import Melody

MAX_INTERVAL = 12
# duration classes in ticks (12 per quarter): sixteenth, triplet eighth, eighth, ..., whole, longer
DURATION_BINS = (3, 4, 6, 8, 9, 12, 18, 24, 36, 48)


def _pitches(melody: Melody) -> np.ndarray:
    return np.array([n.pitch for n in melody.notes], dtype=np.int64)


def pitch_class_histogram(melody: Melody) -> np.ndarray:
    """Share of notes on each of the 12 pitch classes."""
    counts = np.bincount(_pitches(melody) % 12, minlength=12).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def pitch_class_entropy(melody: Melody) -> float:
    """Shannon entropy in bits of the pitch-class histogram: 0 for one repeated pitch class,
    log2(7) ~ 2.81 for a diatonic scale played evenly, at most log2(12) ~ 3.58."""
    p = pitch_class_histogram(melody)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


# [24, 12]: the pitch classes of each major, then each natural-minor scale, tonic C..B
_SCALES = np.array([[(pc - tonic) % 12 in scale for pc in range(12)]
                    for scale in (MAJOR_SCALE, MINOR_SCALE) for tonic in range(12)], dtype=np.int64)


def scale_consistency(melody: Melody) -> float:
    """The largest share of notes that fits one major or natural-minor scale (1.0: diatonic)."""
    pcs = _pitches(melody) % 12
    if not pcs.size:
        return 0.0
    return float((_SCALES @ np.bincount(pcs, minlength=12)).max() / pcs.size)


def pitch_range(melody: Melody) -> int:
    """Highest minus lowest pitch, in semitones."""
    p = _pitches(melody)
    return int(p.max() - p.min()) if p.size else 0


def interval_histogram(melody: Melody) -> np.ndarray:
    """Share of melodic intervals from -12 to +12 semitones (wider leaps clipped to an octave)."""
    steps = np.clip(np.diff(_pitches(melody)), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
    counts = np.bincount(steps, minlength=2 * MAX_INTERVAL + 1).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def mean_abs_interval(melody: Melody) -> float:
    """Average size of a melodic step in semitones (a scalar view of the interval histogram)."""
    steps = np.abs(np.diff(_pitches(melody)))
    return float(steps.mean()) if steps.size else 0.0


def note_density(melody: Melody) -> float:
    """Notes per bar."""
    return len(melody.notes) / melody.n_bars if melody.notes else 0.0


def duration_histogram(melody: Melody) -> np.ndarray:
    """Share of notes in each duration class of ``DURATION_BINS`` (nearest class; longer ones last)."""
    durations = np.array([n.duration for n in melody.notes])
    if not durations.size:
        return np.zeros(len(DURATION_BINS))
    bins = np.abs(durations[:, None] - np.array(DURATION_BINS)[None, :]).argmin(axis=1)
    counts = np.bincount(bins, minlength=len(DURATION_BINS)).astype(float)
    return counts / counts.sum()


def _onset_patterns(melody: Melody) -> np.ndarray:
    """[bars, positions] booleans: which 12-tick-grid positions of each bar start a note."""
    bar = melody.bar_ticks
    patterns = np.zeros((max(melody.n_bars, 1), bar), dtype=bool)
    for n in melody.notes:
        patterns[n.onset // bar, n.onset % bar] = True
    return patterns


def groove_consistency(melody: Melody) -> float:
    """1 minus the mean Hamming distance between the onset patterns of consecutive bars,
    normalised by the bar's grid positions (MusPy's definition): 1.0 when every bar has the same rhythm."""
    patterns = _onset_patterns(melody)
    if len(patterns) < 2:
        return 1.0
    return float(1.0 - (patterns[1:] != patterns[:-1]).mean())


def bar_self_similarity(melody: Melody) -> np.ndarray:
    """[bars, bars] Jaccard similarity of the (position in bar, pitch) sets of every pair of bars
    (two empty bars are alike). One matrix product of the bars' incidence over the melody's own
    (position, pitch) pairs: preprocessing runs it on every corpus melody."""
    bar, k = melody.bar_ticks, max(melody.n_bars, 1)
    if not melody.notes:
        return np.ones((k, k))
    onsets = np.array([n.onset for n in melody.notes])
    pitches = np.array([n.pitch for n in melody.notes])
    _, feature = np.unique((onsets % bar) * 128 + pitches, return_inverse=True)
    incidence = np.zeros((k, feature.max() + 1))
    incidence[onsets // bar, feature] = 1.0  # a set: a repeated (position, pitch) counts once
    shared = incidence @ incidence.T
    sizes = np.diag(shared)
    union = sizes[:, None] + sizes[None, :] - shared
    sim = np.divide(shared, union, out=np.ones((k, k)), where=union > 0)
    np.fill_diagonal(sim, 1.0)
    return sim


def repeated_bars(similarity: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Each bar that repeats an earlier bar exactly, with the first bar it repeats (0-based), from a
    melody's ``bar_self_similarity``."""
    return tuple((i, int(np.flatnonzero(similarity[i, :i] == 1.0)[0])) for i in range(1, len(similarity))
                 if (similarity[i, :i] == 1.0).any())


def repetition_ratio(melody: Melody) -> float:
    """Share of bars (after the first) that repeat some earlier bar exactly (``repeated_bars``): folk
    forms such as AABB score high, through-composed lines and random notes near 0."""
    sim = bar_self_similarity(melody)
    if len(sim) < 2:
        return 0.0
    return len(repeated_bars(sim)) / (len(sim) - 1)


# the scalar metrics compared between sets, with the range used for their histograms
SCALAR_METRICS: dict[str, tuple[Callable[[Melody], float], tuple[float, float]]] = {
    "pitch_class_entropy": (pitch_class_entropy, (0.0, np.log2(12))),
    "scale_consistency": (scale_consistency, (0.5, 1.0)),
    "pitch_range": (pitch_range, (0.0, 36.0)),
    "mean_abs_interval": (mean_abs_interval, (0.0, 8.0)),
    "note_density": (note_density, (0.0, 16.0)),
    "groove_consistency": (groove_consistency, (0.5, 1.0)),
    "repetition_ratio": (repetition_ratio, (0.0, 1.0)),
}


def melody_metrics(melody: Melody) -> dict[str, float]:
    """Every scalar metric of one melody."""
    return {name: float(fn(melody)) for name, (fn, _) in SCALAR_METRICS.items()}


def _histogram(values: Sequence[float], value_range: tuple[float, float], bins: int) -> np.ndarray:
    clipped = np.clip(np.asarray(values, dtype=float), *value_range)
    counts, _ = np.histogram(clipped, bins=bins, range=value_range)
    return counts / max(counts.sum(), 1)


def overlapping_area(a: Sequence[float], b: Sequence[float], value_range: tuple[float, float], bins: int = 20) -> float:
    """Shared area of the two normalised histograms: sum of bin-wise minima (1.0: identical)."""
    return float(np.minimum(_histogram(a, value_range, bins), _histogram(b, value_range, bins)).sum())


def kl_divergence(p_values: Sequence[float], q_values: Sequence[float], value_range: tuple[float, float],
                  bins: int = 20, smoothing: float = 1e-3) -> float:
    """KL(P || Q) in bits between the histograms of two samples, add-``smoothing`` so empty bins stay finite."""
    p = _histogram(p_values, value_range, bins) + smoothing
    q = _histogram(q_values, value_range, bins) + smoothing
    p, q = p / p.sum(), q / q.sum()
    return float((p * np.log2(p / q)).sum())


def compare_sets(generated: Sequence[Melody], real: Sequence[Melody]) -> dict[str, dict[str, float]]:
    """Per scalar metric: the means of both sets, their overlapping area and KL(real || generated)."""
    return compare_metric_values([melody_metrics(m) for m in generated], [melody_metrics(m) for m in real])


def compare_metric_values(
    generated: Sequence[dict[str, float]], real: Sequence[dict[str, float]]
) -> dict[str, dict[str, float]]:
    """``compare_sets`` on metrics already computed per melody (``melody_metrics``), as a distributed
    job returns them."""
    out = {}
    for name, (_, value_range) in SCALAR_METRICS.items():
        g = [values[name] for values in generated]
        r = [values[name] for values in real]
        out[name] = {
            "generated_mean": float(np.mean(g)) if g else float("nan"),
            "real_mean": float(np.mean(r)) if r else float("nan"),
            "overlap": overlapping_area(g, r, value_range),
            "kl_real_generated": kl_divergence(r, g, value_range),
        }
    return out

