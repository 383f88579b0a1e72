"""The copy-check reference: an :class:`~musicgen.evaluation.novelty.IntervalIndex` over the preprocessed shards.

The bulk job builds it once (in a Ray task, :func:`timed_reference_index`) and every generating
actor checks its melodies against it; it lives here, beside the novelty index, so that the
catalog imports evaluation and never the other way round.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from musicgen.data import shards
from musicgen.evaluation.novelty import IntervalIndex
from musicgen.tokenizers import Tokenizer, tokenizer_from_dict


def reference_pitches(tokenizer: Tokenizer, tokens: pa.ChunkedArray) -> list[np.ndarray]:
    """The pitch sequence of each token list of a shard column (``Tokenizer.pitch_sequences``)."""
    column = tokens.combine_chunks()
    return tokenizer.pitch_sequences(column.values.to_numpy().astype(np.int64), column.offsets.to_numpy())


def reference_splits(data: str) -> list[str]:
    """The splits of the preprocessed shards at ``data``; FileNotFoundError when there are none."""
    return shards.present_splits(data, shards.COPY_CHECK_SPLITS)


def reference_index(data: str, min_run: int) -> IntervalIndex:
    """An index of every melody of the preprocessed shards at ``data``, all splits: a generated melody
    that copies a validation or test melody is as much a copy as one that copies a training melody."""
    tokenizer = tokenizer_from_dict(shards.read_vocab(data))
    pitches, ids = [], []
    for split in reference_splits(data):
        table = shards.read_split(data, split, ("melody_id", "tokens"))
        pitches += reference_pitches(tokenizer, table.column("tokens"))
        ids += table.column("melody_id").to_pylist()
    return IntervalIndex.build(pitches, ids, min_run)


def timed_reference_index(data: str, min_run: int) -> tuple[IntervalIndex, int, float]:
    """``reference_index`` with its number of melodies and the seconds it took (what the bulk job
    reports), for building it in a Ray task while the actors start."""
    started = time.perf_counter()
    index = reference_index(data, min_run)
    return index, len(index), time.perf_counter() - started
