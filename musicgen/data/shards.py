"""The preprocessed shards' layout: the only module that knows it.

A preprocessed corpus is a folder (any storage URI)::

    <data>/vocab.json                          the tokenizer (``Tokenizer.to_dict``)
    <data>/stats.json                          what the job read, kept and dropped
    <data>/errors.parquet                      one row per file or tune that failed (ERRORS_SCHEMA)
    <data>/melodies/split=<split>/<part>.parquet   zstd Parquet, SHARD_SCHEMA, one folder per split

The preprocessing job (``data/preprocess.py``) writes it; training, evaluation,
the bulk job's copy check and the tools read it through the functions here, so
none of them imports the Ray job to learn a file name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from musicgen import storage

SPLITS = ("train", "val", "test")
# The splits a generated melody must not copy. All of them: the model learned from train and was
# tuned and picked (best checkpoint by validation loss) on val, and a tune of the held-out test split
# is still a real tune of the corpus, so a melody that reproduces it is no more new than one that
# reproduces a training melody. Evaluation's exact-copy set and its novelty index, and the bulk job's
# copy check, all use these.
COPY_CHECK_SPLITS = SPLITS

MELODIES_FOLDER = "melodies"
VOCAB_FILE = "vocab.json"
STATS_FILE = "stats.json"
ERRORS_FILE = "errors.parquet"

SHARD_SCHEMA = pa.schema(
    [
        ("melody_id", pa.string()),
        ("style", pa.string()),
        ("source_uri", pa.string()),
        ("piece_id", pa.string()),
        ("title", pa.string()),
        ("tokens", pa.list_(pa.int16())),
        ("n_tokens", pa.int32()),
        ("n_notes", pa.int32()),
        ("n_bars", pa.int32()),
        ("key", pa.string()),
        ("time_signature", pa.string()),
        ("tempo", pa.float32()),
        ("sections", pa.list_(pa.int32())),  # onsets (ticks) where sections of the written form start
    ]
)
ERRORS_SCHEMA = pa.schema([("source_uri", pa.string()), ("error_kind", pa.string()), ("message", pa.string())])
DEFAULT_COLUMNS = ("tokens", "style")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the shards have {', '.join(SPLITS)}")
    return split


def split_uri(data_uri: str, split: str) -> str:
    """The folder of one split's Parquet files."""
    return storage.join(data_uri, MELODIES_FOLDER, f"split={_check_split(split)}")


def has_split(data_uri: str, split: str) -> bool:
    """Whether the job wrote any melody of ``split`` (a small corpus may have no val or test melodies)."""
    return storage.exists(split_uri(data_uri, split))


def present_splits(data_uri: str, splits: Iterable[str] = SPLITS) -> list[str]:
    """Those of ``splits`` that the shards at ``data_uri`` hold, in ``SPLITS`` order; FileNotFoundError
    when they hold none."""
    wanted = {_check_split(s) for s in splits}
    found = [s for s in SPLITS if s in wanted and has_split(data_uri, s)]
    if not found:
        raise FileNotFoundError(f"no preprocessed melodies under {storage.join(data_uri, MELODIES_FOLDER)}/"
                                f"split={{{','.join(s for s in SPLITS if s in wanted)}}}/")
    return found


def read_split(data_uri: str, split: str, columns: Sequence[str] = DEFAULT_COLUMNS) -> pa.Table:
    """A whole split as a pyarrow Table (for the n-gram baseline, validation and evaluation), its
    melodies in id order: the same rows in the same order however the preprocessing job's workers
    happened to write its files, which a seeded choice of some of them (the style classifiers'
    training melodies) relies on to be the same choice on every run."""
    fs, path = storage.resolve(split_uri(data_uri, split))
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=list({*columns, "melody_id"}))
    return table.sort_by("melody_id").select(list(columns))


def read_splits(data_uri: str, splits: Iterable[str] = SPLITS,
                columns: Sequence[str] = DEFAULT_COLUMNS) -> dict[str, pa.Table]:
    """{split: Table} for each of ``splits`` the shards hold (see ``present_splits``), each read once."""
    return {split: read_split(data_uri, split, columns) for split in present_splits(data_uri, splits)}


def split_dataset_path(data_uri: str, split: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of one split's folder, for readers that stream it (Ray Data's read_parquet)."""
    return storage.resolve(split_uri(data_uri, split))


def write_split_part(rows: pa.Table, filesystem: pafs.FileSystem, melodies_path: str, split: str,
                     name: str) -> None:
    """One zstd Parquet file ``<melodies_path>/split=<split>/<name>.parquet`` of rows in SHARD_SCHEMA."""
    if rows.schema != SHARD_SCHEMA:
        raise ValueError(f"shard rows must have the shard schema; got columns {', '.join(rows.schema.names)}")
    folder = f"{melodies_path}/split={_check_split(split)}"
    filesystem.create_dir(folder, recursive=True)
    pq.write_table(rows, f"{folder}/{name}.parquet", filesystem=filesystem, compression="zstd")


def melodies_uri(data_uri: str) -> str:
    return storage.join(data_uri, MELODIES_FOLDER)


def read_vocab(data_uri: str) -> dict:
    """The tokenizer the shards were written with (``tokenizer_from_dict`` rebuilds it)."""
    return storage.read_json(storage.join(data_uri, VOCAB_FILE))


def write_vocab(data_uri: str, tokenizer_config: dict) -> None:
    storage.write_json(storage.join(data_uri, VOCAB_FILE), tokenizer_config)


def read_stats(data_uri: str) -> dict:
    return storage.read_json(storage.join(data_uri, STATS_FILE))


def write_stats(data_uri: str, stats: dict) -> None:
    storage.write_json(storage.join(data_uri, STATS_FILE), stats)


def write_errors(data_uri: str, errors: pa.Table) -> None:
    """``errors.parquet``: rows in ERRORS_SCHEMA."""
    sink = pa.BufferOutputStream()
    pq.write_table(errors.cast(ERRORS_SCHEMA), sink, compression="zstd")
    storage.write_bytes(storage.join(data_uri, ERRORS_FILE), sink.getvalue().to_pybytes())
