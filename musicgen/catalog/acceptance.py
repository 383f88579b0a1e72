"""The bulk job's acceptance policy: which melodies a catalog takes, and how many seeds a round plans.

A melody is rejected when it failed or is too short, when it shares ``copy_threshold`` intervals with a
corpus melody, when it repeats or nearly repeats a melody of its style accepted before it, and, when
``min_style_prob`` is set, when the model's style classifier doubts its style.
"""

from __future__ import annotations

import math
from collections import Counter

from musicgen.catalog.progress import Progress
from musicgen.config import BulkConfig
from musicgen.evaluation.novelty import IntervalIndex

MIN_RATE = 0.1  # a round plans at most 1/MIN_RATE seeds per missing melody


class StyleCatalog:
    """The accepted melodies of one style so far, as the duplicate filters see them."""

    def __init__(self, near_duplicate_threshold: int):
        self.index = IntervalIndex(min_run=near_duplicate_threshold)
        self.fingerprints: dict[str, str] = {}
        self.accepted = self.decided = 0

    def add(self, record: dict) -> None:
        self.index.add(record["pitches"], record["id"])
        self.fingerprints[record["fingerprint"]] = record["id"]
        self.accepted += 1


def judge(row: dict, catalog: StyleCatalog, config: BulkConfig) -> tuple[str, int, str | None] | None:
    """Why ``row`` is rejected, as (reason, shared run, the melody it repeats), or None to accept it."""
    if row["error"]:
        return "failed", 0, None
    if row["n_notes"] < config.min_notes:
        return "too_short", 0, None
    if row["longest_shared_run"] >= config.copy_threshold:
        return "copies_training", row["longest_shared_run"], row["nearest_training_id"]
    if row["fingerprint"] in catalog.fingerprints:
        return "duplicate", row["n_notes"] - 1, catalog.fingerprints[row["fingerprint"]]
    run = catalog.index.longest_shared_run(row["pitches"])
    if run.length >= config.near_duplicate_threshold:
        return "near_duplicate", run.length, run.id
    # last, so off_style counts exactly the melodies the user's style filter alone turned away
    if config.min_style_prob and (row["style_prob"] is None or row["style_prob"] < config.min_style_prob):
        return "off_style", 0, None
    return None


def plan_round(progress: Progress, catalogs: dict[str, StyleCatalog], config: BulkConfig) -> list[list]:
    """The next seeds of every unfinished style, interleaved so each batch advances every style."""
    counts = {}
    for style, catalog in catalogs.items():
        missing = config.per_style - catalog.accepted
        if missing > 0:
            rate = max((catalog.accepted + 1) / (catalog.decided + 1), MIN_RATE)
            counts[style] = math.ceil(missing * config.oversample / rate)
    plan = [[style, progress.next_seed[style] + k] for k in range(max(counts.values(), default=0))
            for style in counts if k < counts[style]]
    for style, n in counts.items():
        progress.next_seed[style] += n
    return plan


def incomplete_message(progress: Progress, catalogs: dict[str, StyleCatalog], config: BulkConfig) -> str:
    """Why the job gives up after ``max_rounds``: the styles short of N, the reasons, what to loosen."""
    short = [f"{s} has {c.accepted} of {config.per_style}" for s, c in catalogs.items()
             if c.accepted < config.per_style]
    reasons = Counter(r["reason"] for r in progress.rejected)
    return (f"after {progress.round} rounds {'; '.join(short)} (rejected: "
            f"{', '.join(f'{k}={v}' for k, v in reasons.most_common()) or 'none'}). Loosen --copy-threshold or "
            "--near-duplicate-threshold, sample more freely (--temperature, --top-p), or allow more --max-rounds")


def check_style_filter(config: BulkConfig, generator, styles: tuple[str, ...]) -> None:
    """``min_style_prob`` needs the model's style classifier, fitted on every style asked for."""
    if not config.min_style_prob:
        return
    classifier = generator.style_classifier
    if classifier is None:
        raise ValueError(f"--min-style-prob needs a style classifier, and {config.model} carries none (models "
                         "trained before musicgen wrote one); drop --min-style-prob, or retrain")
    unknown = [s for s in styles if s not in classifier.styles]
    if unknown:
        raise ValueError(f"--min-style-prob: the model's style classifier was not fitted on {', '.join(unknown)} "
                         f"(it knows {', '.join(classifier.styles)}); drop --min-style-prob or those styles")


def check_style_forms(config: BulkConfig, styles: tuple[str, ...]) -> None:
    """Every ``style_forms`` entry names a style of the job and a form it can sample."""
    from musicgen.sampling.form import parse_style_form

    unknown = sorted(set(config.style_forms) - set(styles))
    if unknown:
        raise ValueError(f"--style-form names {', '.join(unknown)}, not among this job's styles "
                         f"({', '.join(styles)})")
    for style, spec in config.style_forms.items():
        try:
            parse_style_form(spec)
        except ValueError as exc:
            raise ValueError(f"--style-form {style}={spec}: {exc}") from None


def style_verdicts(config: BulkConfig, generator, accepted: list[dict], rejected: list[dict]) -> dict:
    """The style classifier's view of the catalog: which classifier, the user's filter and what it turned
    away, and the accepted melodies' mean probability of their style. Not style fidelity: that is
    measured by ``musicgen evaluate`` on unfiltered samples."""
    probs: dict[str, list[float]] = {}
    for r in accepted:
        if r.get("style_prob") is not None:
            probs.setdefault(r["style"], []).append(r["style_prob"])
    return {
        "classifier": generator.style_classifier_version,
        "min_style_prob": config.min_style_prob,
        "off_style_rejected": sum(r["reason"] == "off_style" for r in rejected),
        "mean_style_prob": {s: round(sum(p) / len(p), 4) for s, p in probs.items()},
    }
