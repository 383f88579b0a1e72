"""The style classifier: separates styles on held-out melodies, and saves as plain numbers."""

from __future__ import annotations

import json
import random

from musicgen.evaluation.classifier import StyleClassifier, confusion_matrix, fidelity
from tests.conftest import hymn, jig


def test_separates_styles_on_held_out_melodies_and_round_trips():
    rng = random.Random(0)
    train = [(jig(rng), "jig") for _ in range(40)] + [(hymn(rng), "hymn") for _ in range(40)]
    test = [(jig(rng), "jig") for _ in range(20)] + [(hymn(rng), "hymn") for _ in range(20)]
    clf = StyleClassifier.fit([m for m, _ in train], [s for _, s in train])
    predicted = clf.predict([m for m, _ in test])
    truth = [s for _, s in test]
    assert fidelity(truth, predicted)["all"] == 1.0
    assert confusion_matrix(truth, predicted, list(clf.styles)).tolist() == [[20, 0], [0, 20]]
    restored = StyleClassifier.from_dict(json.loads(json.dumps(clf.to_dict())))
    assert restored.predict([m for m, _ in test]) == predicted


def test_fidelity_is_the_mean_over_styles():
    assert fidelity(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == {"a": 0.5, "b": 1.0, "all": 0.75}
