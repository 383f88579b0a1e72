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
from musicgen.tokenizers.events import EventTokenizer


def reference_pitches(tokenizer: Tokenizer, tokens: pa.ChunkedArray) -> list[np.ndarray]:
    """The pitch sequence of each token list. Event tokens name their pitches (``NOTE_p``), so these
    are read off the ids directly: decoding would also estimate a key, 2 ms a melody on the whole corpus."""
    if not isinstance(tokenizer, EventTokenizer):
        return [np.array([n.pitch for n in tokenizer.decode(t)[0].notes], dtype=np.int16) for t in tokens.to_pylist()]
    column = tokens.combine_chunks()
    values = column.values.to_numpy().astype(np.int64)
    offsets = column.offsets.to_numpy()
    is_note = (values >= tokenizer.first_note_id) & (values < tokenizer.first_note_id + 128)
    notes_before = np.concatenate([[0], np.cumsum(is_note)])
    counts = notes_before[offsets[1:]] - notes_before[offsets[:-1]]
    return np.split((values[is_note] - tokenizer.first_note_id).astype(np.int16), np.cumsum(counts)[:-1])


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
