"""``musicgen evaluate``: do generated melodies sound like their style, and are they new?

For one or more models (side by side) against the preprocessed corpus:

* style fidelity: a classifier trained on the corpus's train split (its
  accuracy on the held-out test split reported beside it) labels each
  generated melody; the share labelled with the requested style, per style,
  and the confusion matrix;
* the objective metrics of generated vs real melodies of the same style: means,
  overlapping area and KL of their distributions;
* novelty: the longest run of pitch intervals shared with any corpus melody
  (an n-gram index, not a pairwise scan), the nearest corpus melody, the share
  at or above the copy threshold, and exact copies;
* validation bits/token of the model next to the n-gram baseline's (from training).

The per-melody work (classifier label, metrics, novelty) is one callable,
``MelodyJudge``: run in-process on sampled melodies, and by a Ray Data actor
pool over the MIDI files of a bulk catalog, so a catalog of any size is judged
on the whole cluster (``python -m pipelines.evaluate`` under ``ray job submit``).

Writes ``report.json``, ``report.md`` and PNG plots (metric histograms, confusion
matrices, piano rolls) plus WAV previews when FluidSynth is installed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from musicgen import storage
from musicgen.config import DEFAULT_BARS, DEFAULT_TOP_P
from musicgen.data import shards
from musicgen.evaluation.classifier import StyleClassifier, confusion_matrix, fidelity
from musicgen.evaluation.metrics import SCALAR_METRICS, compare_metric_values, melody_metrics
from musicgen.evaluation.novelty import IntervalIndex
from musicgen.evaluation.text import format_report
from musicgen.music.melody import Melody, interval_fingerprints
from musicgen.runtime import require
from musicgen.tokenizers import tokenizer_from_dict

log = logging.getLogger(__name__)
MAX_CLASSIFIER_TRAIN = 8000  # melodies: plenty for a linear model, and keeps the fit under a minute


@dataclass(frozen=True)
class EvaluateConfig:
    models: tuple[str, ...]  # model artifact URIs; several are compared side by side
    data: str  # preprocessed shards (the corpus the models learned)
    out: str
    n_per_style: int = 50
    generated: str | None = None  # a bulk catalog folder to judge instead of sampling (one model)
    bars: int = DEFAULT_BARS
    temperature: float = 1.0
    top_p: float = DEFAULT_TOP_P
    guidance: float | None = None  # classifier-free guidance weight; None: each model's default
    seed: int = 0
    copy_threshold: int = 16  # intervals: the bulk job's default
    previews_per_style: int = 1  # piano rolls (and WAVs) in the report
    actors: int | None = None  # judges of a catalog's melodies (Ray Data actor pool; default: the cluster's CPUs)
    batch_size: int = 256  # catalog melodies per judging call


@dataclass
class Labelled:
    melody: Melody
    style: str


def _labelled(tokenizer, table) -> list[Labelled]:
    return [Labelled(tokenizer.decode(t)[0], s)
            for t, s in zip(table.column("tokens").to_pylist(), table.column("style").to_pylist())]


def corpus_melodies(data: str, split: str) -> list[Labelled]:
    """One split's melodies, decoded."""
    return _labelled(tokenizer_from_dict(shards.read_vocab(data)), shards.read_split(data, split, ("tokens", "style")))


def read_corpus(data: str) -> dict[str, tuple[list[str], list[Labelled]]]:
    """{split: (melody ids, melodies)} of every split the shards hold, each read and decoded once: what
    the classifier, the real metrics and the copy checks all work from."""
    tokenizer = tokenizer_from_dict(shards.read_vocab(data))
    tables = shards.read_splits(data, shards.SPLITS, ("melody_id", "tokens", "style"))
    missing = [s for s in ("train", "test") if s not in tables]
    if missing:
        raise FileNotFoundError(f"{data} has no {' or '.join(missing)} melodies: evaluation fits its style "
                                "classifier on train and scores it on test")
    return {split: (table.column("melody_id").to_pylist(), _labelled(tokenizer, table))
            for split, table in tables.items()}


def copy_checks(corpus: dict[str, tuple[list[str], list[Labelled]]], min_run: int = 8) -> tuple[IntervalIndex, set]:
    """The novelty index (longest shared interval run) and the exact-copy fingerprints, both over the same
    melodies: those of ``shards.COPY_CHECK_SPLITS`` (every split; see there why)."""
    ids, melodies = [], []
    for split in shards.COPY_CHECK_SPLITS:
        if split in corpus:
            ids += corpus[split][0]
            melodies += [x.melody for x in corpus[split][1]]
    reference = IntervalIndex.build(melodies, ids, min_run)
    fingerprints = {interval_fingerprints(m, 16)[0] for m in melodies if len(m.notes) > 1}
    return reference, fingerprints


def sample_melodies(model: str, styles: Sequence[str], config: EvaluateConfig) -> tuple[list[Labelled], dict]:
    """``n_per_style`` melodies per style from the model, and the model's own metadata."""
    from musicgen.sampling import MelodyGenerator, SampleRequest

    generator = MelodyGenerator.from_artifact(model)
    known = [s for s in styles if s in generator.styles]
    requests = [SampleRequest(style=s, seed=config.seed + i, bars=config.bars, temperature=config.temperature,
                              top_p=config.top_p, guidance=config.guidance)
                for s in known for i in range(config.n_per_style)]
    melodies, guidance = [], None
    for start in range(0, len(requests), 256):
        for g in generator.generate(requests[start : start + 256]):
            melodies.append(Labelled(g.melody, g.request.style))
            guidance = g.request.guidance
    training = generator.meta.training or {}
    return melodies, {"model": generator.model_name, "model_id": generator.model_id,
                      "model_version": generator.model_version, "training": training, "guidance": guidance}


class MelodyJudge:
    """Per-melody verdicts: the classifier's style, the scalar metrics, the longest interval run shared
    with the corpus and whether the melody is an exact copy. Called in-process on sampled melodies,
    and as a Ray Data actor on blocks of catalog rows (``style``, ``mid_path``), reading the MIDI itself."""

    def __init__(self, classifier: dict, reference, corpus_fingerprints, catalog: str | None = None):
        import ray

        def fetch(x):
            return ray.get(x) if isinstance(x, ray.ObjectRef) else x

        self.classifier = StyleClassifier.from_dict(classifier)
        self.reference, self.corpus_fingerprints = fetch(reference), fetch(corpus_fingerprints)
        self.catalog = catalog

    def judge(self, melodies: Sequence[Melody]) -> list[dict]:
        predicted = self.classifier.predict(list(melodies)) if melodies else []
        return [{"predicted": label, "metrics": melody_metrics(m),
                 "longest_run": self.reference.longest_shared_run(m).length,
                 "exact_copy": len(m.notes) > 1 and interval_fingerprints(m, 16)[0] in self.corpus_fingerprints}
                for m, label in zip(melodies, predicted)]

    def __call__(self, batch: dict) -> dict:
        from musicgen.music.midi import read_midi

        melodies = [read_midi(storage.read_bytes(storage.join(self.catalog, p))) for p in batch["mid_path"]]
        verdicts = self.judge(melodies)
        return {"style": list(batch["style"]), "predicted": [v["predicted"] for v in verdicts],
                "longest_run": [v["longest_run"] for v in verdicts], "exact_copy": [v["exact_copy"] for v in verdicts],
                **{m: [v["metrics"][m] for v in verdicts] for m in SCALAR_METRICS}}


def read_manifest(catalog: str):
    """A bulk catalog's ``manifest.parquet`` as a pyarrow Table."""
    import pyarrow.parquet as pq

    fs, path = storage.resolve(storage.join(catalog, "manifest.parquet"))
    return pq.read_table(path, filesystem=fs)


def judge_needs(actors: int | None) -> tuple[dict[str, float], str]:
    """What judging a catalog needs of the cluster (a CPU per actor; default one per CPU there is), in words."""
    n = actors or 1
    return {"CPU": n}, f"judging a catalog with {n} actor(s) (one CPU each; --actors sets how many)"


def judge_catalog(catalog: str, manifest, judge_args: tuple, config: EvaluateConfig) -> tuple[list[dict], dict]:
    """Verdicts on every melody of a bulk catalog (rows of its manifest), by a Ray Data actor pool of
    ``MelodyJudge``."""
    import ray
    import ray.data

    first = manifest.slice(0, 1).to_pylist()[0] if manifest.num_rows else {}
    about = {"model": first.get("model_name", "catalog"), "model_id": first.get("model_id", catalog),
             "model_version": first.get("model_version", ""), "training": {}}
    if not manifest.num_rows:
        return [], about
    require(*judge_needs(config.actors))  # none could ever start, or fewer than --actors asks for
    actors = config.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    classifier, reference, fingerprints = judge_args
    rows = (ray.data.from_arrow(manifest.select(["style", "mid_path"]))
            .map_batches(MelodyJudge,
                         fn_constructor_args=(classifier, ray.put(reference), ray.put(fingerprints), catalog),
                         batch_size=config.batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))
            .take_all())
    return [{"style": r["style"], "predicted": r["predicted"], "longest_run": int(r["longest_run"]),
             "exact_copy": bool(r["exact_copy"]), "metrics": {m: float(r[m]) for m in SCALAR_METRICS}}
            for r in rows], about


def catalog_previews(catalog: str, manifest, per_style: int) -> dict[str, list[Melody]]:
    """The first few melodies of each style of a catalog, for piano rolls and WAVs in the report."""
    from musicgen.music.midi import read_midi

    previews: dict[str, list[Melody]] = {}
    for row in manifest.select(["style", "mid_path"]).to_pylist():
        chosen = previews.setdefault(row["style"], [])
        if len(chosen) < per_style:
            chosen.append(read_midi(storage.read_bytes(storage.join(catalog, row["mid_path"]))))
    return previews


def novelty(verdicts: Sequence[dict], threshold: int) -> dict:
    lengths = np.array([v["longest_run"] for v in verdicts])
    exact = sum(v["exact_copy"] for v in verdicts)
    return {
        "mean_longest_shared_run": float(lengths.mean()) if len(lengths) else 0.0,
        "max_longest_shared_run": int(lengths.max()) if len(lengths) else 0,
        "share_at_or_above_copy_threshold": float((lengths >= threshold).mean()) if len(lengths) else 0.0,
        "exact_copies": int(exact),
        "longest_runs": lengths.tolist(),
    }


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def metric_histograms_png(generated: Sequence[dict], real: Sequence[dict], title: str) -> bytes:
    """Histograms of each scalar metric, real vs generated, from per-melody ``melody_metrics``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 6))
    axes = fig.subplots(2, 4).flatten()
    for ax, (name, (_, value_range)) in zip(axes, SCALAR_METRICS.items()):
        bins = np.linspace(*value_range, 21)
        ax.hist(np.clip([v[name] for v in real], *value_range), bins=bins, alpha=0.5, density=True, label="real")
        ax.hist(np.clip([v[name] for v in generated], *value_range), bins=bins, alpha=0.5, density=True,
                label="generated")
        ax.set_title(name.replace("_", " "), fontsize=9)
    axes[-1].axis("off")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def confusion_png(matrix: np.ndarray, styles: Sequence[str], title: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(styles)), styles, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(styles)), styles, fontsize=8)
    ax.set_xlabel("classified as")
    ax.set_ylabel("requested style")
    for i in range(len(styles)):
        for j in range(len(styles)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def fit_style_classifier(train: Sequence[Labelled]) -> tuple[StyleClassifier, list[Labelled]]:
    """The classifier style fidelity is judged by, fitted on up to ``MAX_CLASSIFIER_TRAIN`` melodies of
    the train split (the same ones on every run), and those melodies: what ``evaluate`` and the form
    measurement (``tools/measure_form.py``) both judge by."""
    rng = np.random.default_rng(0)
    fit_on = [train[i] for i in sorted(rng.permutation(len(train))[:MAX_CLASSIFIER_TRAIN])]
    log.info("training the style classifier on %d melodies", len(fit_on))
    return StyleClassifier.fit([x.melody for x in fit_on], [x.style for x in fit_on]), fit_on


def run_evaluation(config: EvaluateConfig) -> dict:
    from musicgen.music.export import to_png_bytes, to_wav_bytes, wav_available

    corpus = read_corpus(config.data)  # the shards, read once
    train, test = corpus["train"][1], corpus["test"][1]
    styles = sorted({x.style for x in train})
    classifier, fit_on = fit_style_classifier(train)
    storage.write_json(storage.join(config.out, "classifier.json"), classifier.to_dict())
    real_fidelity = fidelity([x.style for x in test], classifier.predict([x.melody for x in test]))

    reference, corpus_fingerprints = copy_checks(corpus, min_run=8)
    real_by_style = {s: [x.melody for x in (test if sum(t.style == s for t in test) >= 20 else train) if x.style == s]
                     for s in styles}

    real_metrics = {s: [melody_metrics(m) for m in real_by_style[s]] for s in styles}
    judge_args = (classifier.to_dict(), reference, corpus_fingerprints)

    results = []
    sources = [config.generated] if config.generated else list(config.models)
    for index, source in enumerate(sources):
        if config.generated:
            manifest = read_manifest(source)
            verdicts, about = judge_catalog(source, manifest, judge_args, config)
            previews = catalog_previews(source, manifest, config.previews_per_style)
        else:
            generated, about = sample_melodies(source, styles, config)
            verdicts = [{"style": g.style, **v} for g, v in zip(generated, MelodyJudge(*judge_args).judge(
                [g.melody for g in generated]))]
            previews = {s: [g.melody for g in generated if g.style == s][: config.previews_per_style] for s in styles}
        label = f"{about['model']}:{about['model_id']}"
        if any(r["label"].startswith(label) for r in results):  # two runs of one name: tell them apart
            label += f" ({about['model_version']})"
        requested, predicted = [v["style"] for v in verdicts], [v["predicted"] for v in verdicts]
        present = [s for s in styles if s in requested]
        matrix = confusion_matrix(requested, predicted, styles)
        tag = f"model{index}"
        storage.write_bytes(storage.join(config.out, f"{tag}-confusion.png"),
                            confusion_png(matrix, styles, f"{label}: style fidelity"))
        per_style = {}
        for s in present:
            mine = [v["metrics"] for v in verdicts if v["style"] == s]
            per_style[s] = {"n": len(mine), "metrics": compare_metric_values(mine, real_metrics[s])}
            storage.write_bytes(storage.join(config.out, f"{tag}-{s}-metrics.png"),
                                metric_histograms_png(mine, real_metrics[s], f"{label}: {s}, generated vs real"))
            for k, melody in enumerate(previews.get(s, [])):
                stem = f"{tag}-{s}-{k}"
                storage.write_bytes(storage.join(config.out, f"{stem}.png"), to_png_bytes(melody, f"{label} {s}"))
                if wav_available():
                    storage.write_bytes(storage.join(config.out, f"{stem}.wav"), to_wav_bytes(melody))
        overlap = {m: float(np.mean([per_style[s]["metrics"][m]["overlap"] for s in present])) for m in SCALAR_METRICS}
        results.append({
            **about, "tag": tag, "label": label, "n": len(verdicts),
            "style_fidelity": fidelity(requested, predicted),
            "confusion": matrix.tolist(),
            "metric_overlap": overlap,
            "per_style": per_style,
            "novelty": novelty(verdicts, config.copy_threshold),
        })
    report = {"config": asdict(config), "styles": styles,
              "classifier": {"train_melodies": len(fit_on), "test_melodies": len(test), "real_accuracy": real_fidelity},
              "models": results, "wav_previews": wav_available()}
    storage.write_json(storage.join(config.out, "report.json"), report)
    storage.write_bytes(storage.join(config.out, "report.md"), format_report(report).encode())
    return report
