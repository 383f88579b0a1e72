"""Typed settings for each stage: frozen dataclasses, built from flags or YAML (``from_dict``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # of the weights a sampler uses (see musicgen.sampling.precision)
# nucleus sampling's default everywhere (generate, Serve, bulk, evaluate): top-p 1 let a model's long tail widen
# melodies' range and cost style fidelity (docs/quality.md, "Sampling defaults")
DEFAULT_TOP_P = 0.9
DEFAULT_BARS = 16  # a melody's length when a request gives neither bars nor a form
MAX_BARS = 64  # the longest melody a request may ask for
DEFAULT_SECTION_BARS = 8  # bars per section of a form


def check_precision(precision: str) -> None:
    """The one check of a ``precision`` setting (bulk and serve configs, and the generator loader)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing job (files -> Parquet token shards)."""

    inputs: tuple[str, ...]
    output: str
    tokenizer: str = "events"
    # "dirname": a file's style is the name of its folder; otherwise a path to a
    # CSV with columns path (relative to the CSV), style and optionally work.
    style_from: str = "dirname"
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    min_notes: int = 8
    # Melodies whose first HEAD_NOTES notes share intervals and rhythm are kept in
    # one split, so a tune that two collections both hold cannot leak across splits.
    head_notes: int = 16
    files_per_batch: int = 256
    rows_per_shard: int = 5000
    num_cpus: int | None = None

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("give at least one --input")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError("split fractions must lie in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val + test fractions leave no training data")


def from_dict(cls: type[T], values: dict) -> T:
    """Build a config from a plain dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (Ray Train). Model sizes go in ``model_config``."""

    data: str
    name: str
    storage: str
    model: str = "lstm"
    model_config: dict = dataclasses.field(default_factory=dict)
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    epochs: int = 10
    max_steps: int | None = None  # stops early when reached; with it, epochs is an upper bound
    # with max_steps: fewer steps when max_steps would not fit this many seconds at the pace of the
    # run's own first steps (the schedule then decays over the steps that fit)
    time_budget_s: float | None = None
    batch_size: int = 32
    max_len: int = 256  # longer melodies are cut to a random window of this many tokens
    # a corpus of up to this many tokens is read once into Ray's object store (int16: 2 bytes each),
    # not again from Parquet each epoch on the CPUs the workers train on; 0: always stream it
    cached_tokens: int = 50_000_000
    lr: float = 2e-3
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr/10 at max_steps (constant without it)
    weight_decay: float = 0.01
    transpose: int = 3  # random transposition of up to +-N semitones (events tokenizer)
    eval_every_steps: int | None = None  # report + checkpoint every N steps (default: every epoch)
    val_batches: int | None = None  # cap on validation batches per report (default: all)
    ngram_order: int = 5
    max_failures: int = 2
    keep_checkpoints: int = 3
    seed: int = 0
    # Fine-tuning: start from this model artifact's weights and config (model_config overrides the
    # config, e.g. style_dropout); it must be the same model kind, trained on the same vocabulary.
    init_from: str | None = None
    # Guidance distillation (models/distill.py): the student, started from init_from, learns its guided
    # distribution at this weight, so sampling at it takes one pass a melody instead of two.
    distill_guidance: float | None = None
    # Chaos testing: the rank-0 worker raises once at this global step, to exercise
    # FailureConfig restarts. Never set in normal runs.
    inject_failure_at_step: int | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.max_steps is None and self.epochs < 1:
            raise ValueError("give --epochs >= 1 or --max-steps")
        if self.time_budget_s is not None and (self.max_steps is None or self.time_budget_s <= 0):
            raise ValueError("a time budget needs --max-steps (the most steps it may fit) and a positive length")
        if self.distill_guidance is not None and (not self.init_from or self.distill_guidance <= 1
                                                   or self.model not in ("lstm", "transformer")):
            raise ValueError("--distill-guidance W needs --init-from TEACHER (an lstm or transformer trained with "
                             "style dropout) and W > 1")


BULK_FORMATS = ("mid", "abc", "wav")


@dataclass(frozen=True)
class BulkConfig:
    """Settings of a bulk catalog job: N accepted melodies per style, checked against the corpus.

    The fields up to ``oversample`` decide which melodies end up in the catalog, so
    a rerun that finishes a catalog must keep them; the others only decide how fast.
    """

    model: str
    out: str
    per_style: int
    styles: tuple[str, ...] = ()  # empty: every style the model knows
    bars: int = DEFAULT_BARS  # of a melody without a form (a form's length is its sections times section_bars)
    form: str | None = None  # section letters such as AABB, or "auto": each melody draws a form its style uses
    section_bars: int = DEFAULT_SECTION_BARS
    variation: float = 0.0  # share of a returning section's last bars sampled again
    loop: bool = False  # every melody a seamless loop
    # per style, a form in place of ``form``: "AABB:8" (with its bars a section), "AABB", "auto" or "none"
    style_forms: dict[str, str] = dataclasses.field(default_factory=dict)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = DEFAULT_TOP_P
    guidance: float | None = None  # classifier-free guidance weight; None: the model's default
    precision: str = "auto"  # fp32, bf16 or int8 weights; auto: the fastest here at batch_size (measured)
    seed: int = 0  # a style's melodies use seeds seed, seed + 1, ... in turn
    formats: tuple[str, ...] = ("mid", "abc")  # "wav" as well where fluidsynth and a soundfont exist
    # rejected as a copy: shares a run of at least this many pitch intervals with a corpus melody
    copy_threshold: int = 16
    # rejected as a near duplicate: shares that long a run with a melody of its style already accepted
    near_duplicate_threshold: int = 16
    min_notes: int = 8
    # rejected as off style (a user's filter, reported apart from every fidelity figure): the model's style
    # classifier gives the requested style less than this probability; 0: off
    min_style_prob: float = 0.0
    reference: str | None = None  # shards to check copies against (default: those the model was trained on)
    # melodies per sampling call (one CPU core: 188 melodies/s at 512, 153 at 256; docs/benchmarks.md)
    batch_size: int = 512
    oversample: float = 1.1  # extra seeds per round beyond those the acceptance rate so far calls for
    actors: int | None = None  # generator actors (default: one per CPU of the cluster, or per GPU)
    use_gpu: bool | None = None  # None: when the cluster has a GPU
    max_rounds: int = 8
    checkpoint_every: int = 256  # progress is saved after about this many melodies
    # None: 16 for s3:// (each put waits on the network), 1 for a local folder, where more threads only
    # contend for the GIL and the folder's lock in the kernel (2-3x the CPU a file, taken from the actors)
    write_threads: int | None = None
    # Chaos testing: the driver SIGKILLs itself in the middle of writing melody N+1. Never set in normal runs.
    inject_kill_after: int | None = None

    def __post_init__(self):
        check_precision(self.precision)
        if self.per_style < 1 or self.batch_size < 1:
            raise ValueError("per_style and batch_size must be >= 1")
        if not 0 <= self.variation <= 1 or self.section_bars < 1:
            raise ValueError("variation must be between 0 and 1, and section_bars at least 1")
        if min(self.copy_threshold, self.near_duplicate_threshold) < 1:
            raise ValueError("copy and near-duplicate thresholds must be >= 1 interval")
        if not 0 <= self.min_style_prob <= 1:
            raise ValueError(f"min_style_prob is a probability, from 0 (off) to 1; got {self.min_style_prob}")
        if self.oversample < 1 or self.max_rounds < 1:
            raise ValueError("oversample must be >= 1 and max_rounds >= 1")
        unknown = sorted(set(self.formats) - set(BULK_FORMATS))
        if unknown or not self.formats:
            raise ValueError(f"unknown formats {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(BULK_FORMATS)}")
