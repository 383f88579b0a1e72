"""The small interface every melody tokenizer implements (no torch, no Ray here)."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from musicgen.music.melody import Melody, MelodyBatch

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
STYLE_PREFIX = "STYLE_"
STYLE_POSITION = 1  # every sequence starts <bos> STYLE_x: the style token's index, hidden by style dropout


def scored_positions(window: Sequence[int]) -> range:
    """Indices of the tokens of a window (a whole melody or a cut of one) that a model is scored on:
    every token after the first, except the prompt's style token after ``<bos>``, which every model
    is given (the n-gram baseline keeps one table per style). Training, validation and the n-gram
    baseline all use this rule."""
    first = STYLE_POSITION + 1 if len(window) and window[0] == Tokenizer.bos_id else 1
    return range(first, len(window))


class Tokenizer(ABC):
    """Maps a (melody, style) pair to token ids and back.

    Every sequence is ``<bos> STYLE_x ... <eos>``. The vocabulary is a fixed
    base (``base_vocab``) followed by one token per style, so a tokenizer is
    fully described by its name and style list (see ``to_dict``).
    """

    name: ClassVar[str]

    def __init__(self, styles: Sequence[str]):
        if len(set(styles)) != len(styles):
            raise ValueError("duplicate style names")
        self.styles: tuple[str, ...] = tuple(styles)
        self.vocab: list[str] = [PAD, BOS, EOS, *self.base_vocab()]
        self.first_style_id = len(self.vocab)
        self.vocab += [STYLE_PREFIX + s for s in self.styles]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self._grammar = None  # built on first use (``grammar``)
        if len(self.index) != len(self.vocab):
            raise ValueError("tokens are not unique")

    pad_id, bos_id, eos_id = 0, 1, 2

    @abstractmethod
    def base_vocab(self) -> list[str]:
        """Tokens between the special tokens and the style tokens."""

    @abstractmethod
    def encode_body(self, melody: Melody) -> list[int]:
        """Token ids of the melody itself, without <bos>, style and <eos>."""

    @abstractmethod
    def decode_body(self, ids: Sequence[int]) -> Melody:
        """Inverse of ``encode_body``."""

    def encode_many(self, batch: MelodyBatch, styles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """``encode`` of every melody of a batch: flat ``values`` and ``offsets`` (melody i is
        ``values[offsets[i]:offsets[i + 1]]``), and for each melody None or why it cannot be
        tokenized (its tokens are then empty). Tokenizers override this where they can vectorise."""
        sequences, errors = [], []
        for i, style in enumerate(styles):
            try:
                sequences.append(self.encode(batch.melody(i), style))
                errors.append(None)
            except ValueError as exc:
                sequences.append([])
                errors.append(str(exc))
        offsets = np.cumsum([0, *map(len, sequences)])
        return np.fromiter(itertools.chain.from_iterable(sequences), np.int64, offsets[-1]), offsets, errors

    def __len__(self) -> int:
        return len(self.vocab)

    def style_token(self, style: str) -> int:
        try:
            return self.first_style_id + self.styles.index(style)
        except ValueError:
            raise KeyError(f"unknown style {style!r}; known: {', '.join(self.styles)}") from None

    def prompt(self, style: str, primer: Melody | None = None,
               time_signature: tuple[int, int] | None = None) -> tuple[list[int], int]:
        """The ids a sampler starts from (``<bos> STYLE_x``, then the primer's tokens if any), and the
        bar lines they already hold (what the grammar's count starts from)."""
        ids = [self.bos_id, self.style_token(style)]
        return (ids + self.encode_body(primer), 0) if primer is not None else (ids, 0)

    @abstractmethod
    def grammar(self):
        """The sampling grammar of this vocabulary (``musicgen.tokenizers.grammar``), built once:
        its tables, and the masks it remembers, outlive a request."""

    def key_tokens(self) -> np.ndarray:
        """Ids of the KEY tokens, which a requested key forces (the grammar's ``start``): none unless a
        vocabulary writes its melodies' keys as tokens."""
        return np.array([], dtype=np.int64)

    def key_token(self, key: str) -> int:
        raise ValueError(f"the {self.name!r} tokenizer has no key tokens")

    def pitch_span(self, ids: np.ndarray) -> tuple[int, int] | None:
        """(lowest, highest) pitch a token sequence spells as ids that ``transpose`` can shift; None
        when it has none (a vocabulary such as ABC's spells pitches in context, not as shiftable ids)."""
        return None

    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray:
        """The sequence moved by ``semitones`` (data augmentation); only where ``pitch_span`` is not None."""
        raise TypeError(f"the {self.name!r} tokenizer cannot transpose token ids")

    def pitch_sequences(self, values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
        """The pitches (int16) of each sequence of a flat id array cut at ``offsets`` (a Parquet list
        column's layout): what the copy check compares."""
        return [np.array([n.pitch for n in self.decode(values[a:b])[0].notes], dtype=np.int16)
                for a, b in zip(offsets[:-1], offsets[1:])]

    def encode(self, melody: Melody, style: str) -> list[int]:
        return [self.bos_id, self.style_token(style), *self.encode_body(melody), self.eos_id]

    def decode(self, ids: Sequence[int]) -> tuple[Melody, str | None]:
        """Decode a sequence; stops at <eos> or <pad>, and reads the style token if present."""
        ids = [int(i) for i in ids]
        style = None
        if ids and ids[0] == self.bos_id:
            ids = ids[1:]
        if ids and self.first_style_id <= ids[0] < len(self.vocab):
            style = self.styles[ids[0] - self.first_style_id]
            ids = ids[1:]
        for stop in (self.eos_id, self.pad_id):
            if stop in ids:
                ids = ids[: ids.index(stop)]
        return self.decode_body(ids), style

    def to_dict(self) -> dict:
        return {"name": self.name, "styles": list(self.styles), "vocab": self.vocab}
