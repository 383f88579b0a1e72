"""Turning Parquet rows into padded torch batches, with training-time transposition.

Used by ``iter_torch_batches(collate_fn=...)`` in the Ray Train workers and by
the bare-loop benchmark, so both see the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from musicgen.tokenizers import tokenizer_from_dict


def windows(sequence: Sequence[int], max_len: int) -> list[Sequence[int]]:
    """A whole melody as consecutive windows of at most ``max_len + 1`` tokens, each starting on the
    last token of the one before, so every token after the first is predicted exactly once: how
    validation and the n-gram baseline both score whole melodies with a model that reads at most
    ``max_len`` tokens."""
    starts = range(0, max(1, len(sequence) - 1), max_len)
    return [sequence[s : s + max_len + 1] for s in starts]


class Collate(NumpyBatchCollateFn):
    """Pads variable-length melodies to the longest in the batch (at most ``max_len + 1``).

    Longer melodies are cut to a random window. With ``transpose`` > 0 and a
    tokenizer that can transpose its ids (events), each melody is shifted by a random
    number of semitones in [-transpose, transpose], as far as the MIDI range allows.
    """

    def __init__(self, tokenizer_config: dict, max_len: int, transpose: int = 0, seed: int = 0,
                 data_vocab: dict | None = None):
        tokenizer = tokenizer_from_dict(tokenizer_config)
        self.style_index = {s: i for i, s in enumerate(tokenizer.styles)}
        # shards written with another style list (fine-tuning on a new corpus): their ids, by token, in this vocabulary
        self.remap = None
        if data_vocab is not None and list(data_vocab["vocab"]) != tokenizer.vocab:
            self.remap = np.array([tokenizer.index[token] for token in data_vocab["vocab"]], dtype=np.int64)
        self.tokenizer, self.max_len, self.transpose = tokenizer, max_len, transpose
        self.rng = np.random.default_rng(seed)

    def _shift(self, seq: np.ndarray) -> np.ndarray:
        span = self.tokenizer.pitch_span(seq) if self.transpose else None
        if span is None:  # nothing to move, or a vocabulary whose ids cannot be moved (ABC)
            return seq
        low = max(-self.transpose, -span[0])
        high = min(self.transpose, 127 - span[1])
        return self.tokenizer.transpose(seq, int(self.rng.integers(low, high + 1)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return self.collate(batch["tokens"], batch["style"])

    def collate(self, sequences: Sequence[np.ndarray], styles: Sequence[str]) -> dict[str, torch.Tensor]:
        window = self.max_len + 1
        rows = []
        for seq in sequences:
            seq = np.asarray(seq, dtype=np.int64)
            if self.remap is not None:
                seq = self.remap[seq]
            if len(seq) > window:
                start = int(self.rng.integers(0, len(seq) - window + 1))
                seq = seq[start : start + window]
            rows.append(self._shift(seq))
        tokens = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        return {
            "tokens": torch.from_numpy(tokens),
            "style": torch.tensor([self.style_index[s] for s in styles], dtype=torch.long),
        }
