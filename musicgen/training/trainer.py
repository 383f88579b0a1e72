"""Ray Train adapter: runs the training loop on N workers (CPU or GPU), checkpoints to storage, resumes.

- data: Ray Data reads the Parquet shards and streams an equal share of the
  training split to each worker (``get_dataset_shard``); a small corpus
  (``TrainConfig.cached_tokens``) is read once into the object store, not again each epoch;
- parallelism: over the process group TorchTrainer sets up (gloo on CPU, NCCL
  on GPU): the LSTM and Transformer train through a DDP wrapper
  (``prepare_model``); the GAN, whose step has two losses and two optimizers,
  all-reduces its gradients itself after each backward; bf16 autocast on GPU;
- checkpoints: ``<storage>/<name>/checkpoint_*`` (best k by validation loss),
  written by rank 0 at each report; each is a model artifact (loadable with
  ``load_artifact``) plus the optimizer state; a rerun with the same name and storage,
  or a restart after a worker failure (``FailureConfig``), resumes from the
  latest one;
- outputs: ``<storage>/<name>/metrics.jsonl``, ``loss.png`` and the model
  artifact ``<storage>/<name>/model/`` (see ``musicgen.models.save_artifact``), with the
  style classifier fitted on the training split as its companion
  (``musicgen.models.style_companion``).

This module is the driver side: the checks made before any worker starts, the n-gram
baseline, the TorchTrainer set-up and the final artifact. What each worker runs is
:mod:`musicgen.training.worker`'s.
"""

from __future__ import annotations

import dataclasses
import signal
import time

from musicgen import stopping, storage
from musicgen.config import TrainConfig
from musicgen.data import shards
from musicgen.data.collate import windows
from musicgen.data.shards import read_split
from musicgen.models import check_model_config, load_artifact, read_meta, resolve_model, save_artifact
from musicgen.models.style_companion import fit_companion, write_companion
from musicgen.runtime import require
from musicgen.tokenizers import make_tokenizer, tokenizer_from_dict
from musicgen.training.loop import read_metrics
from musicgen.training.ngram import StyleNgramBaseline
from musicgen.training.worker import model_kwargs, train_worker


def finetuning_vocab(config: TrainConfig, data_vocab: dict) -> dict:
    """The vocabulary a run from ``init_from`` trains with, checked before any worker starts: the
    source model's, plus a style token for each style of the data it does not know yet (so a
    studio can fine-tune the shipped model on its own styles and keep the others)."""
    meta = read_meta(config.init_from)
    if meta.model != config.model and (meta.model, config.model) != ("lstm", "gan"):
        raise ValueError(f"--init-from {config.init_from} is a {meta.model} model, not {config.model} "
                         "(a GAN may also start from an LSTM)")
    source = meta.tokenizer
    if source is None or source["name"] != data_vocab["name"]:
        raise ValueError(f"--init-from {config.init_from} uses the {(source or {}).get('name')!r} tokenizer, "
                         f"{config.data} the {data_vocab['name']!r} one: preprocess with --tokenizer "
                         f"{(source or {}).get('name')}")
    styles = list(source["styles"]) + [s for s in data_vocab["styles"] if s not in source["styles"]]
    return make_tokenizer(source["name"], styles).to_dict()


def check_model_options(config: TrainConfig) -> tuple[dict, dict]:
    """(the vocabulary the run trains with, the data's), after checking on the driver the model config every
    worker will build from them: a typo or a bad value in ``-m key=value`` is one ValueError here (exit
    code 2 from the CLI), before any Ray worker starts, not an error in every Ray Train worker that
    FailureConfig then retries."""
    data_vocab = shards.read_vocab(config.data)
    start_config = None
    vocab = data_vocab
    if config.init_from:
        config = dataclasses.replace(config, init_from=resolve_model(config.init_from))
        vocab = finetuning_vocab(config, data_vocab)
        source = read_meta(config.init_from)
        start_config = source.config
        if config.distill_guidance:
            check_teacher(config, source, vocab)
    check_model_config(config.model, model_kwargs(config, tokenizer_from_dict(vocab), start_config))
    return vocab, data_vocab


def check_teacher(config: TrainConfig, meta, vocab: dict) -> None:
    """A model guidance can be distilled from: trained with style dropout, not distilled itself, and
    knowing every style of the data (the student learns the teacher's guided melodies of each)."""
    from musicgen.models.distill import baked_guidance
    from musicgen.models.lstm import null_style_index

    teacher = check_model_config(meta.model, meta.config, construct=False)  # a saved model's: it was built
    if null_style_index(teacher) is None or baked_guidance(teacher) != 1:
        raise ValueError(f"--distill-guidance: {config.init_from} cannot be guided (trained without style dropout) "
                         "or was distilled already; distil from a model trained with style dropout")
    if list(vocab["styles"]) != list(meta.tokenizer["styles"]):
        raise ValueError(f"--distill-guidance: {config.data} has styles {config.init_from} does not know; "
                         "distil on shards of its own styles")


def ngram_baseline(data_uri: str, tokenizer, order: int, max_len: int) -> dict:
    """Validation bits/token of a per-style Kneser–Ney n-gram fitted on the training split, scored on
    the windows validation scores (``windows``)."""
    train, val = read_split(data_uri, "train"), read_split(data_uri, "val")
    model = StyleNgramBaseline(order, len(tokenizer)).fit(
        train.column("tokens").to_pylist(), train.column("style").to_pylist()
    )
    scored = [(w, style) for seq, style in zip(val.column("tokens").to_pylist(), val.column("style").to_pylist())
              for w in windows(seq, max_len)]
    return model.bits_per_token([w for w, _ in scored], [s for _, s in scored])


def _cached_ngram_baseline(config: TrainConfig, tokenizer, run_uri: str) -> dict:
    """The baseline of ``ngram_baseline``, kept in ``<run>/ngram_baseline.json`` so a resumed run
    does not fit it again (it takes a minute on the full corpus)."""
    path = storage.join(run_uri, "ngram_baseline.json")
    key = {"data": config.data, "order": config.ngram_order, "max_len": config.max_len}
    if storage.exists(path):
        saved = storage.read_json(path)
        if saved["key"] == key:
            return saved["bits_per_token"]
    bits = ngram_baseline(config.data, tokenizer, config.ngram_order, config.max_len)
    storage.write_json(path, {"key": key, "bits_per_token": bits})
    return bits


def resource_needs(config: TrainConfig) -> tuple[dict[str, float], str]:
    """What a run needs of the cluster to ever start, and in words (for the error when it cannot).

    Workers hold ``cpus_per_worker`` CPUs each for the whole run (GPU workers
    too), and Ray Data's read tasks, which feed them the shards, need a CPU of
    their own: with none left over the workers wait for data that is never read.
    """
    held = config.workers * config.cpus_per_worker
    need = {"CPU": held + 1, **({"GPU": config.workers} if config.use_gpu else {})}
    gpus = " and a GPU each" if config.use_gpu else ""
    return need, (f"training with {config.workers} worker(s) (holding {held} CPU(s){gpus}, plus one CPU for "
                  "Ray Data to read the shards; fewer --workers need less)")


def format_report(metrics: dict, max_steps: int | None = None) -> str:
    """One line of progress per report: step (of the steps the run will take: its own record, which a
    time budget may have lowered, else ``max_steps``), losses, validation bits/token beside the n-gram's."""
    max_steps = metrics.get("max_steps") or max_steps
    of = f"/{max_steps}" if max_steps else ""
    parts = [f"step {metrics.get('step')}{of}"]
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{label} {metrics[key]:.3f}")
    if isinstance(metrics.get("val_bits_per_token"), (int, float)):
        ngram = metrics.get("ngram_bits_per_token")
        beside = f" (5-gram {ngram:.3f})" if isinstance(ngram, (int, float)) else ""
        parts.append(f"val bits/token {metrics['val_bits_per_token']:.3f}{beside}")
    if isinstance(metrics.get("tokens_per_second"), (int, float)):
        parts.append(f"{metrics['tokens_per_second']:.0f} tokens/s")
    if metrics.get("resumed_from_step") is not None:
        parts.append(f"resumed from step {metrics['resumed_from_step']}")
    return "  ".join(parts)


class _ReportWatcher:
    """Calls ``on_report`` on the driver for each report the workers append to metrics.jsonl while
    ``fit`` runs: a report is a line there (written by rank 0), so the driver needs no worker output."""

    def __init__(self, run_uri: str, on_report, interval_s: float = 2.0):
        import threading

        self.run_uri, self.on_report, self.interval_s = run_uri, on_report, interval_s
        self.seen = len(read_metrics(run_uri))  # a rerun resumes: what it wrote before is not news
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="musicgen-report-watcher", daemon=True)

    def _poll(self) -> None:
        try:
            history = read_metrics(self.run_uri)
        except Exception:  # noqa: BLE001  (a line half written: read it next time)
            return
        for metrics in history[self.seen:]:
            self.on_report(metrics)
        self.seen = max(self.seen, len(history))

    def _watch(self) -> None:
        while not self.stop.wait(self.interval_s):
            self._poll()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        if exc[0] is None:
            self._poll()  # the last report, written just before fit returned


def run_training(config: TrainConfig, on_report=None) -> dict:
    """Train on the current Ray cluster; returns a summary (also stored in the model artifact).

    ``on_report(metrics)`` (optional) is called on the driver for each report as it is written
    (``format_report`` makes it a line of progress)."""
    import ray
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    require(*resource_needs(config))  # first: on a cluster too small, fit() would wait forever
    # workers run in another working directory: hand them absolute locations
    config = dataclasses.replace(config, data=storage.absolute(config.data), storage=storage.absolute(config.storage))
    if config.init_from:
        config = dataclasses.replace(config, init_from=storage.absolute(resolve_model(config.init_from)))
    vocab, data_vocab = check_model_options(config)
    for split in ("train", "val"):
        if not shards.has_split(config.data, split):
            raise ValueError(f"{config.data} has no {split} melodies: a small corpus needs a larger share for "
                             "it, e.g. `musicgen preprocess ... --val-fraction 0.2`")
    data_stats = shards.read_stats(config.data)
    tokenizer = tokenizer_from_dict(vocab)
    run_uri = storage.join(config.storage, config.name)
    started = time.perf_counter()
    ngram = _cached_ngram_baseline(config, tokenizer, run_uri)

    # Ray Train reports progress itself; per-epoch dataset bars would flood job logs
    ray.data.DataContext.get_current().enable_progress_bars = False
    fs, path = shards.split_dataset_path(config.data, "train")
    train_data = ray.data.read_parquet(path, filesystem=fs).select_columns(["tokens", "style"])
    if data_stats.get("tokens", float("inf")) <= config.cached_tokens:
        train_data = train_data.materialize()
    storage_fs, storage_path = storage.resolve(config.storage)
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})}
    class Trainer(TorchTrainer):
        def _register_sigint_handler(self, controller):
            # Ray Train answers Ctrl-C by aborting the run and returning from fit() as if it had
            # finished (exit 0, no resumable stop); where musicgen.stopping handles SIGINT, it stops
            # the run as it does on SIGTERM (exit 130, resumable from the last checkpoint)
            if not stopping.handles(signal.SIGINT):
                super()._register_sigint_handler(controller)

    trainer = Trainer(
        train_worker,
        train_loop_config={
            "config": dataclasses.asdict(config),
            "tokenizer": vocab,
            "data_vocab": data_vocab,
            "run_uri": run_uri,
            "ngram_bits_per_token": ngram.get("all"),
        },
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=config.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=config.keep_checkpoints,
                checkpoint_score_attribute="val_loss",
                checkpoint_score_order="min",
            ),
        ),
        datasets={"train": train_data},
    )
    if on_report is None:
        result = trainer.fit()
    else:
        with _ReportWatcher(run_uri, on_report):
            result = trainer.fit()
    best = result.get_best_checkpoint(metric="val_loss", mode="min") or result.checkpoint
    with best.as_directory() as folder:
        model, checkpoint_meta = load_artifact(folder)
    best_metrics = next((m for c, m in result.best_checkpoints if c.path == best.path), result.metrics or {})
    summary = {
        "run": run_uri,
        "model": config.model,
        "steps": (result.metrics or {}).get("step", checkpoint_meta.step),
        "best_step": checkpoint_meta.step,
        "best_val_loss": best_metrics.get("val_loss"),
        "val_bits_per_token": {
            k.split("/", 1)[1] if "/" in k else "all": v
            for k, v in best_metrics.items() if k.startswith("val_bits_per_token")
        },
        "ngram_bits_per_token": ngram,
        "final_metrics": result.metrics,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    # the style classifier rides along (each melody's style verdict in bulk and Serve); before model.json,
    # which marks the artifact complete
    classifier, summary["style_classifier"] = fit_companion(config.data)
    companions = write_companion(storage.join(run_uri, "model"), classifier) if classifier else {}
    save_artifact(
        storage.join(run_uri, "model"),
        model,
        config.model,
        tokenizer=vocab, styles=tuple(tokenizer.styles), data_stats=data_stats, training=summary,
        train_config=dataclasses.asdict(config), companions=companions,
    )
    summary["artifact"] = storage.join(run_uri, "model")
    return summary
