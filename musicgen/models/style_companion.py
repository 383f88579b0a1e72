"""The style classifier as a model artifact's companion: fitted on the model's training split, saved
beside its weights, and read back by the loader so every melody can carry a style verdict.

``<artifact>/style_classifier.json`` is ``StyleClassifier.to_dict()`` (plain JSON numbers), declared
in ``model.json`` as the companion ``style_classifier``. ``musicgen train`` writes it at the end of a
run; ``tools/ship_pretrained.py`` writes the shipped model's. It is fitted with the frozen recipe
(``StyleClassifier.fit``, unchanged) on a fixed, seeded subsample of the training split: at most
``PER_STYLE`` melodies of each style. The whole split (15k melodies of the full corpus) takes about
a minute on two cores, the subsample a few seconds, and held-out accuracy is about the same (see
``fit_companion``).

A verdict is a judgement of one melody, for a library to filter on. It is not style fidelity:
fidelity is measured by ``musicgen evaluate`` on unfiltered samples with a classifier it fits itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

import numpy as np

from musicgen import storage
from musicgen.data import shards
from musicgen.models.style_classifier import StyleClassifier
from musicgen.music.melody import Melody
from musicgen.pretrained import resolve_model

COMPANION = "style_classifier"  # its name in ArtifactMeta.companions
STYLE_CLASSIFIER_FILE = "style_classifier.json"
PER_STYLE = 400  # melodies of each style it is fitted on (all of a style that has fewer)
SEED = 0


def subsample(styles: Sequence[str], per_style: int = PER_STYLE, seed: int = SEED) -> list[int]:
    """Indices of at most ``per_style`` melodies of each style, chosen by a seeded shuffle per style
    (styles in sorted order, indices ascending): the same rows for the same split, every time."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for style in sorted(set(styles)):
        rows = [i for i, s in enumerate(styles) if s == style]
        chosen += sorted(int(i) for i in rng.permutation(rows)[:per_style])
    return chosen


def fit_companion(data_uri: str, per_style: int = PER_STYLE, seed: int = SEED) -> tuple[StyleClassifier | None, dict]:
    """(the classifier fitted on the train split of the shards at ``data_uri``, what it was fitted on and how
    long it took). None when the split holds fewer than two styles (a fine-tuning run on one new style):
    a classifier of one class says nothing."""
    from musicgen.tokenizers import tokenizer_from_dict

    started = time.perf_counter()
    table = shards.read_split(data_uri, "train", ("tokens", "style"))
    styles = table.column("style").to_pylist()
    info = {"split": "train", "per_style": per_style, "seed": seed, "styles": sorted(set(styles))}
    if len(set(styles)) < 2:
        return None, {**info, "skipped": "fewer than two styles in the training split"}
    rows = subsample(styles, per_style, seed)
    tokenizer = tokenizer_from_dict(shards.read_vocab(data_uri))
    tokens = table.column("tokens")
    melodies = [tokenizer.decode(tokens[i].as_py())[0] for i in rows]
    classifier = StyleClassifier.fit(melodies, [styles[i] for i in rows])
    info.update(melodies=len(rows), train_melodies=len(styles), seconds=round(time.perf_counter() - started, 2))
    return classifier, info


def write_companion(folder_uri: str, classifier: StyleClassifier) -> dict[str, str]:
    """Write ``style_classifier.json`` into an artifact's folder; returns the ``companions`` entry that
    declares it (write it before ``model.json``, which marks the artifact complete)."""
    storage.write_bytes(storage.join(folder_uri, STYLE_CLASSIFIER_FILE),
                        (json.dumps(classifier.to_dict()) + "\n").encode())
    return {COMPANION: STYLE_CLASSIFIER_FILE}


def load_companion(uri: str, meta) -> tuple[StyleClassifier, str] | tuple[None, None]:
    """(the artifact's style classifier, the first 12 hex digits of its file's sha256), or (None, None) when
    ``meta`` (its ``ArtifactMeta``) declares none."""
    path = meta.companions.get(COMPANION)
    if path is None:
        return None, None
    data = storage.read_bytes(storage.join(resolve_model(uri), *path.split("/")))
    try:
        classifier = StyleClassifier.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{uri}: its style classifier companion {path} is not a saved StyleClassifier: {exc}") from exc
    return classifier, hashlib.sha256(data).hexdigest()[:12]


def verdicts(classifier: StyleClassifier, melodies: Sequence[Melody],
             styles: Sequence[str]) -> list[tuple[float | None, str | None]]:
    """(probability of the requested style, the most probable style) of each melody, in one pass.
    The probability is None for a style the classifier was not fitted on; both are None for a melody
    without notes (nothing to judge)."""
    judged = [i for i, m in enumerate(melodies) if m.notes]
    out: list[tuple[float | None, str | None]] = [(None, None)] * len(melodies)
    if not judged:
        return out
    p = classifier.probabilities([melodies[i] for i in judged])
    for row, i in enumerate(judged):
        style = styles[i]
        prob = float(p[row, classifier.styles.index(style)]) if style in classifier.styles else None
        out[i] = (None if prob is None else round(prob, 6), classifier.styles[int(p[row].argmax())])
    return out
