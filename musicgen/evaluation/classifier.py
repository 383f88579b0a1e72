"""The style classifier, which lives in :mod:`musicgen.models.style_classifier`, moved there unchanged
(issue #24: its code and training recipe are frozen) so that a model artifact can carry one fitted on
its training data and the sampler's loader can give each melody a verdict (``MelodyGenerator.verdicts``)
without importing evaluation. Re-exported here, where evaluation has always imported it from."""

from musicgen.models.style_classifier import (
    COMMON_METERS,
    HASH_BUCKETS,
    StyleClassifier,
    confusion_matrix,
    fidelity,
    melody_features,
)

__all__ = ["COMMON_METERS", "HASH_BUCKETS", "StyleClassifier", "confusion_matrix", "fidelity", "melody_features"]
