"""The bulk catalog job: N accepted melodies per style, checked against the corpus, written atomically, resumable.

1. Reference: every melody of the shards the model was trained on (all splits),
   indexed once (:class:`~musicgen.evaluation.novelty.IntervalIndex`) in a Ray
   task while the actors start, and read by every actor from the object store.
2. Rounds: a plan of (style, seed) requests (each style's next seeds, as many as
   its acceptance rate so far calls for, times ``oversample``) goes through
   ``map_batches(CatalogGenerator, ActorPoolStrategy)`` in fixed batches; an
   actor samples a batch in one call and returns figures and file contents (a short later round,
   the few melodies some style still lacks, goes through the same generator on the driver).
3. Acceptance on the driver, in seed order per style, whatever order batches
   come back in: rejected if it shares ``copy_threshold`` intervals with a corpus
   melody, repeats (same fingerprint) or nearly repeats (a long shared run, from
   a second, growing index) a melody of its style accepted before, or is too
   short, or (``min_style_prob``, off by default) the model's style classifier
   gives its style too low a probability; else accepted until the style has N. Styles are judged apart, so one
   style's decisions never wait on another's (:mod:`musicgen.catalog.acceptance`).
4. Writes, off the main thread as melodies are accepted (one writer thread for a
   local folder, 16 for S3): ``<out>/<style>/<id>.mid`` and ``.abc`` (``.wav``),
   then ``<id>.json`` last: its presence means complete (:mod:`musicgen.catalog.writer`).
5. Progress (``<out>/progress.json``: the round's plan and how much of it is
   decided; ``<out>/progress/``: the records of the melodies accepted and
   rejected, a part per save) is saved atomically every
   ``checkpoint_every`` melodies, once the writes before it have finished. A
   rerun with the same settings resumes there: complete melodies are not written
   again, partial ones are rewritten, stray files are removed at the end (:mod:`musicgen.catalog.progress`).
6. ``manifest.parquet``, ``rejected.parquet`` and ``summary.json``.

Ids are sha256(model version:style:seed) and a melody depends only on its seed,
so a resumed run ends with the catalog an uninterrupted run makes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import posixpath
import time
from collections import Counter, deque

import pyarrow as pa

from musicgen import storage
from musicgen.catalog.acceptance import (
    StyleCatalog,
    check_style_filter,
    check_style_forms,
    incomplete_message,
    judge,
    plan_round,
    style_verdicts,
)
from musicgen.catalog.generate import CatalogGenerator, Loader, row_request
from musicgen.catalog.layout import MANIFEST, PROGRESS, REJECTED, SUMMARY
from musicgen.catalog.progress import Progress, load_progress, save_progress
from musicgen.catalog.writer import Writer, complete_ids, remove_strays, write_parquet
from musicgen.config import BulkConfig
from musicgen.data import shards
from musicgen.evaluation.reference import reference_splits, timed_reference_index
from musicgen.models import REFERENCE_FOLDER, resolve_model
from musicgen.runtime import require

PRECISION_KEY = "musicgen.precision_choice"  # the manifest's schema metadata: how the precision was chosen
MIN_REPORTED_RUN = 8  # shared runs shorter than this are recorded as 0 (chance, not copying)
# settings that decide which melodies the catalog holds: a rerun into the same folder must keep them
RESULT_SETTINGS = ("per_style", "bars", "temperature", "top_k", "top_p", "guidance", "precision", "seed", "formats",
                   "copy_threshold", "near_duplicate_threshold", "min_notes", "min_style_prob", "batch_size",
                   "oversample")
SPREAD, MIN_BLOCK = 8, 32  # a round is sampled in at least SPREAD calls where it has SPREAD x MIN_BLOCK melodies
LOCAL_ROUND = 64  # a later round this short is sampled on the driver: a new actor pool takes seconds to start
FORM_SETTINGS = ("form", "section_bars", "variation", "loop")
REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("style", pa.string()), ("seed", pa.int64()),
                             ("reason", pa.string()), ("longest_run", pa.int32()), ("nearest_id", pa.string()),
                             ("error", pa.string()), ("style_prob", pa.float64()), ("top_style", pa.string())])


def actor_needs(actors: int, use_gpu: bool | None) -> tuple[dict[str, float], str]:
    """What the generator actor pool needs of the cluster to start, and in words."""
    kind = "GPU" if use_gpu else "CPU"
    return {kind: actors}, (
        f"the bulk job's pool of {actors} generator actor(s) (one {kind} each; --actors sets how many)"
    )


def run_bulk(config: BulkConfig, loader: Loader | None = None) -> dict:
    """Make or finish the catalog ``config`` describes on the current Ray cluster; returns its summary.

    ``loader(model_uri, device=..., precision=...)`` builds the generator, on the
    driver (for its metadata) and in every actor; default ``MelodyGenerator.from_artifact``.
    """
    import ray
    import torch
    from tqdm import tqdm

    from musicgen.sampling import MelodyGenerator
    from musicgen.sampling.precision import resolve_precision

    started = time.perf_counter()
    loader = loader or MelodyGenerator.from_artifact
    config = dataclasses.replace(config, model=storage.absolute(resolve_model(config.model)),
                                 out=storage.absolute(config.out))
    generator = loader(config.model, device="cpu", precision="fp32")
    styles = tuple(config.styles) or generator.styles
    generator.check_styles(styles)
    check_style_filter(config, generator, styles)
    check_style_forms(config, styles)
    data = reference_data(config, generator)
    if "wav" in config.formats:
        from musicgen.music.export import wav_available

        if not wav_available():
            raise ValueError("wav needs the fluidsynth program and a General MIDI soundfont; drop wav from --formats")
    use_gpu = config.use_gpu if config.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    actors = config.actors or max(1, int(ray.cluster_resources().get("GPU" if use_gpu else "CPU", 1)))
    require(*actor_needs(actors, use_gpu))  # the pool starts every actor at once: on too few CPUs, never
    # the precision every actor samples with (each makes slightly different melodies): auto is timed here at
    # the job's batch size on one thread, as an actor samples; a catalog being finished keeps its own
    requested = config.precision
    if requested == "auto" and storage.exists(storage.join(config.out, PROGRESS)):
        requested = storage.read_json(storage.join(config.out, PROGRESS))["settings"]["precision"]
    device = torch.device("cuda" if use_gpu else "cpu")
    choice = resolve_precision(requested, generator.model, generator.tokenizer, device,
                               (config.batch_size,), artifact=generator.meta.weights_sha256, threads=1)
    precision = choice.precision
    config = dataclasses.replace(config, precision=precision)
    settings = {"model_version": generator.model_version, "styles": list(styles), "reference": data,
                "style_classifier": generator.style_classifier_version,
                **{k: getattr(config, k) for k in RESULT_SETTINGS},
                # only where set, so that a catalog begun before forms (or per-style forms) existed still resumes
                **({k: getattr(config, k) for k in FORM_SETTINGS} if config.form or config.loop or config.style_forms
                   else {}),
                **({"style_forms": dict(config.style_forms)} if config.style_forms else {})}
    progress = load_progress(config.out, settings)
    accepted_before = len(progress.accepted)

    # indexed in a task while the actors start (seconds each); an actor waits for it after loading its model
    reference_splits(data)  # no shards: fail now, not in every actor
    reference, reference_size, index_seconds = ray.remote(timed_reference_index).options(
        num_cpus=0, num_returns=3).remote(data, min(MIN_REPORTED_RUN, config.copy_threshold))
    job = Job(config, generator, styles, progress, reference, loader, use_gpu, actors)
    for style in styles:  # a bad form, or auto for a model that records no forms: one clear error now
        row_request(generator, style, config.seed, job.sampling())
    threads = config.write_threads or (16 if storage.is_s3(config.out) else 1)
    writer = Writer(config.out, threads, complete_ids(config.out, styles), config.inject_kill_after)
    generating = time.perf_counter()
    with tqdm(total=config.per_style * len(styles), initial=accepted_before, unit="melody", desc="catalog") as bar:
        job.run(writer, bar)
    writer.close()
    generation_seconds = time.perf_counter() - generating

    def in_order(rows: list[dict]) -> list[dict]:
        return sorted(rows, key=lambda r: (styles.index(r["style"]), r["seed"]))

    records = in_order(progress.accepted)
    manifest = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "pitches"} for r in records])
    manifest = manifest.replace_schema_metadata({PRECISION_KEY: json.dumps(choice.as_dict())})
    write_parquet(storage.join(config.out, MANIFEST), manifest)
    write_parquet(storage.join(config.out, REJECTED),
                  pa.Table.from_pylist(in_order(progress.rejected), schema=REJECTED_SCHEMA))
    removed = remove_strays(config.out, records, styles)
    wall = time.perf_counter() - started
    summary = {
        "out": config.out,
        "manifest": storage.join(config.out, MANIFEST),
        "model": config.model,
        "model_id": generator.model_id,
        "model_version": generator.model_version,
        "per_style": config.per_style,
        "accepted": dict(Counter(r["style"] for r in records)),
        "rejected": dict(Counter(r["reason"] for r in progress.rejected)),
        "rejected_per_style": {s: dict(Counter(r["reason"] for r in progress.rejected if r["style"] == s))
                               for s in styles},
        "copy_threshold": config.copy_threshold,
        "near_duplicate_threshold": config.near_duplicate_threshold,
        "style_verdicts": style_verdicts(config, generator, records, progress.rejected),
        "reference": data,
        "reference_melodies": ray.get(reference_size),
        "rounds": progress.round,
        "accepted_before": accepted_before,
        "accepted_this_run": len(records) - accepted_before,
        "generated_this_run": job.generated,
        "stray_files_removed": removed,
        "actors": actors,
        "device": "cuda" if use_gpu else "cpu",
        "precision": precision,
        "precision_choice": choice.as_dict(),  # how auto chose it, with the timings (also the manifest's metadata)
        "batch_size": config.batch_size,
        "index_seconds": round(ray.get(index_seconds), 2),
        "generation_seconds": round(generation_seconds, 2),
        "wall_seconds": round(wall, 2),
        "melodies_per_second": round((len(records) - accepted_before) / wall, 2),
        "generated_per_second": round(job.generated / generation_seconds, 2),
    }
    storage.write_json(storage.join(config.out, SUMMARY), summary)
    return summary


def reference_data(config: BulkConfig, generator) -> str:
    """The shards to check copies against: ``--reference``, else those the artifact carries (the
    shipped model does), else those the model was trained on."""
    carried = storage.join(resolve_model(config.model), REFERENCE_FOLDER)
    if not config.reference and storage.exists(storage.join(carried, shards.VOCAB_FILE)):
        return storage.absolute(carried)
    data = config.reference or generator.meta.training_data
    if not data:
        raise ValueError(f"{config.model} names no training data to check copies against; pass --reference SHARDS")
    return storage.absolute(data)


def plan_blocks(remaining: list[list], batch_size: int, round_size: int) -> list[list[list]]:
    """The sampling calls of a round's remaining plan: each batch of ``batch_size`` requests (what
    progress counts) cut into pieces of at most ``round_size / SPREAD`` (and at least ``MIN_BLOCK``),
    so a small round still keeps every actor busy, where one batch would have gone to one actor (with
    WAV rendering, most of a demo's bulk step). The cut depends on the saved plan alone, so a resumed
    round samples in the same calls as an uninterrupted one (``remaining`` starts at a batch)."""
    target = min(batch_size, max(MIN_BLOCK, -(-round_size // SPREAD)))
    piece = -(-batch_size // -(-batch_size // target))  # equal pieces of a batch
    return [remaining[i + j : min(i + j + piece, i + batch_size, len(remaining))]
            for i in range(0, len(remaining), batch_size) for j in range(0, min(batch_size, len(remaining) - i), piece)]


class Job:
    """One bulk run's moving parts: rounds through Ray Data, and the decisions on the driver."""

    def __init__(self, config: BulkConfig, generator, styles: tuple[str, ...], progress: Progress, reference_ref,
                 loader: Loader, use_gpu: bool, actors: int):
        self.config, self.generator, self.styles, self.progress = config, generator, styles, progress
        self.reference_ref, self.loader, self.use_gpu, self.actors = reference_ref, loader, use_gpu, actors
        from musicgen.sampling.sampler import resolve_guidance

        # the weight every melody is sampled with (the model's default when not set); fails now if unusable
        self.guidance = resolve_guidance(generator.model, config.guidance)
        self.local: CatalogGenerator | None = None  # the driver's own, for short later rounds
        self.catalogs = {style: StyleCatalog(config.near_duplicate_threshold) for style in styles}
        for record in progress.accepted:
            self.catalogs[record["style"]].add(record)
        for record in [*progress.accepted, *progress.rejected]:
            self.catalogs[record["style"]].decided += 1
        self.generated = 0

    def run(self, writer: Writer, bar) -> None:
        """Rounds until every style has its N melodies: the saved round first, if it was cut short."""
        progress = self.progress
        while self.unfinished():
            if progress.done_batches * self.config.batch_size >= len(progress.plan):
                if progress.round >= self.config.max_rounds:
                    raise ValueError(incomplete_message(progress, self.catalogs, self.config))
                progress.plan, progress.done_batches = plan_round(progress, self.catalogs, self.config), 0
                progress.round += 1
                save_progress(self.config.out, progress)
            self.run_round(writer, bar)

    def unfinished(self) -> bool:
        return any(c.accepted < self.config.per_style for c in self.catalogs.values())

    def sampled(self, plan: list[list]):
        """The plan's remaining requests, a block per sampling call, through the actor pool; on the driver
        where this is a short later round of a CPU job (``LOCAL_ROUND``)."""
        import ray.data

        blocks = [pa.table({"style": [s for s, _ in piece], "seed": [n for _, n in piece]})
                  for piece in plan_blocks(plan, self.config.batch_size, len(self.progress.plan))]
        kwargs = {"model": self.config.model, "device": "cuda" if self.use_gpu else "cpu",
                  "precision": self.config.precision, "reference": self.reference_ref, "sampling": self.sampling(),
                  "formats": self.config.formats, "loader": self.loader}
        if self.progress.round > 1 and not self.use_gpu and len(plan) <= LOCAL_ROUND:
            return self.sampled_here(blocks, kwargs)
        resources = {"num_gpus": 1} if self.use_gpu else {"num_cpus": 1}
        # from_blocks keeps one block per batch and builds them here; from_arrow would first run a
        # metadata task per block, whose worker start-up (~1.7 s) delays the actors and competes with them
        return ray.data.from_blocks(blocks).map_batches(
            CatalogGenerator, fn_constructor_kwargs=kwargs,
            batch_size=None, batch_format="pyarrow",  # a block is a sampling call
            # every actor starts at once (an autoscaling pool would add them one model load at a time), and
            # takes its next batch only when it is free: batches queued on a busy actor idle the others at the end
            compute=ray.data.ActorPoolStrategy(min_size=min(self.actors, len(blocks)), max_size=self.actors,
                                               max_tasks_in_flight_per_actor=1),
            **resources,
        ).iter_batches(batch_size=None, batch_format="pyarrow")

    def sampled_here(self, blocks: list[pa.Table], kwargs: dict):
        """The blocks through the ``CatalogGenerator`` an actor runs, on one torch thread as an actor has."""
        import torch

        self.local = self.local or CatalogGenerator(**kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for block in blocks:
                yield self.local(block)
        finally:
            torch.set_num_threads(threads)

    def run_round(self, writer: Writer, bar) -> None:
        """Generate the rest of the round's plan and decide each melody as soon as its style's earlier seeds are."""
        progress, b = self.progress, self.config.batch_size
        first = progress.done_batches
        remaining = progress.plan[first * b :]
        batch_of = {(s, n): first + i // b for i, (s, n) in enumerate(remaining)}
        size = Counter(batch_of.values())
        received: Counter = Counter()
        # a resumed round may regenerate melodies decided before the stop: only the undecided are waited for
        queues = {s: deque(n for st, n in remaining if st == s and n > (progress.decided_upto[s] or -math.inf))
                  for s in self.styles}
        wanted = {s: set(q) for s, q in queues.items()}
        pending: dict[str, dict[int, tuple[dict, dict]]] = {s: {} for s in self.styles}
        saved_at = first
        for block in self.sampled(remaining):
            files = {fmt: block.column(fmt).to_pylist() for fmt in self.config.formats}
            for i, row in enumerate(block.drop_columns(list(self.config.formats)).to_pylist()):
                self.generated += 1
                received[batch_of[(row["style"], row["seed"])]] += 1
                if row["seed"] in wanted[row["style"]]:
                    pending[row["style"]][row["seed"]] = (row, {fmt: files[fmt][i] for fmt in files})
            for style in self.styles:
                self.decide_ready(style, queues[style], pending[style], writer, bar)
            while progress.done_batches in size and received[progress.done_batches] == size[progress.done_batches]:
                progress.done_batches += 1
            if not self.unfinished():
                break  # the rest of the plan is not needed
            if (progress.done_batches - saved_at) * b >= self.config.checkpoint_every:
                writer.flush()
                save_progress(self.config.out, progress)
                saved_at = progress.done_batches
        writer.flush()
        save_progress(self.config.out, progress)

    def decide_ready(self, style: str, queue: deque, pending: dict, writer: Writer, bar) -> None:
        """Decide the style's melodies in seed order, as far as they have arrived."""
        catalog = self.catalogs[style]
        while queue and queue[0] in pending and catalog.accepted < self.config.per_style:
            row, files = pending.pop(queue.popleft())
            self.progress.decided_upto[style] = row["seed"]
            catalog.decided += 1
            verdict = judge(row, catalog, self.config)
            if verdict:
                reason, run, nearest = verdict
                self.progress.rejected.append({"id": row["id"], "style": style, "seed": row["seed"], "reason": reason,
                                               "longest_run": run, "nearest_id": nearest, "error": row["error"],
                                               "style_prob": row.get("style_prob"),
                                               "top_style": row.get("top_style")})
                continue
            record = self.record(row)
            catalog.add(record)
            self.progress.accepted.append(record)
            writer.submit({k: v for k, v in record.items() if k != "pitches"}, files)
            bar.update(1)
        if catalog.accepted >= self.config.per_style:  # the style's later melodies are not needed
            queue.clear()
            pending.clear()

    def sampling(self) -> dict:
        """The settings every melody's ``SampleRequest`` is made with, besides its style and seed."""
        c = self.config
        return {"bars": c.bars, "temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p,
                "guidance": self.guidance, "form": c.form, "section_bars": c.section_bars, "variation": c.variation,
                "loop": c.loop, "style_forms": dict(c.style_forms)}

    def record(self, row: dict) -> dict:
        """A catalog entry: the melody's figures, how it was made, and where its files are (relative to out).
        Its bars are the melody's own (the figures'); the precision is the one every actor sampled with."""
        from musicgen.sampling.provenance import BULK_FIELDS, provenance

        c, g = self.config, self.generator
        made = provenance(g, row_request(g, row["style"], row["seed"], self.sampling()), precision=c.precision)
        return {
            **{k: v for k, v in row.items() if k != "error"},
            **made.subset(BULK_FIELDS), "copy_threshold": c.copy_threshold,
            # every row of a job with forms or loops says its own (None: a through-composed melody)
            **({k: getattr(made, k) for k in FORM_SETTINGS} if c.form or c.loop else {}),
            "style_classifier_version": g.style_classifier_version,
            **{f"{fmt}_path": posixpath.join(row["style"], f"{row['id']}.{fmt}") for fmt in c.formats},
        }


def format_summary(summary: dict) -> str:
    """The few lines printed at the end of a run."""
    from musicgen.sampling.precision import PrecisionChoice

    lines = [
        f"{summary['accepted_this_run']} melodies accepted in {summary['wall_seconds']} s "
        f"({summary['melodies_per_second']} melodies/s; {summary['generated_this_run']} generated at "
        f"{summary['generated_per_second']}/s on {summary['actors']} {summary['device']} actor(s)); "
        f"{summary['accepted_before']} were already there",
        f"{'style':<16}{'accepted':>9}  rejected",
    ]
    for style, n in summary["accepted"].items():
        rejected = summary["rejected_per_style"].get(style, {})
        lines.append(f"{style:<16}{n:>9}  {', '.join(f'{k}={v}' for k, v in sorted(rejected.items())) or '-'}")
    lines.append(f"copies: rejected at >= {summary['copy_threshold']} shared intervals with any of "
                 f"{summary['reference_melodies']} corpus melodies; near duplicates at >= "
                 f"{summary['near_duplicate_threshold']}")
    verdicts = summary.get("style_verdicts") or {}
    if verdicts.get("classifier"):
        means = ", ".join(f"{s} {p:.2f}" for s, p in verdicts["mean_style_prob"].items())
        filtered = (f"; --min-style-prob {verdicts['min_style_prob']} rejected {verdicts['off_style_rejected']} "
                    "as off_style" if verdicts["min_style_prob"] else "")
        lines.append(f"style verdicts (the model's classifier {verdicts['classifier']}): mean P(style) of the "
                     f"accepted {means or '-'}{filtered}. A user's filter, not style fidelity (`musicgen evaluate`)")
    lines.append(f"sampling {PrecisionChoice(**summary['precision_choice']).describe()}")
    lines.append(f"files: {summary['out']}/<style>/<id>.*  manifest: {summary['manifest']}")
    return "\n".join(lines)
