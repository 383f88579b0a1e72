"""The objective melody metrics, which live in :mod:`musicgen.music.metrics` (pure functions of a
``Melody``, so the style classifier that a model artifact carries can use them below this layer).
Re-exported here, where evaluation has always imported them from."""

from musicgen.music.metrics import (
    DURATION_BINS,
    MAX_INTERVAL,
    SCALAR_METRICS,
    bar_self_similarity,
    compare_metric_values,
    compare_sets,
    duration_histogram,
    groove_consistency,
    interval_histogram,
    kl_divergence,
    mean_abs_interval,
    melody_metrics,
    note_density,
    overlapping_area,
    pitch_class_entropy,
    pitch_class_histogram,
    pitch_range,
    repetition_ratio,
    scale_consistency,
)

__all__ = [
    "DURATION_BINS", "MAX_INTERVAL", "SCALAR_METRICS", "bar_self_similarity", "compare_metric_values",
    "compare_sets", "duration_histogram", "groove_consistency", "interval_histogram", "kl_divergence",
    "mean_abs_interval", "melody_metrics", "note_density", "overlapping_area", "pitch_class_entropy",
    "pitch_class_histogram", "pitch_range", "repetition_ratio", "scale_consistency",
]
