"""Melody tokenizers behind one interface: ``events`` (default), ``keyed`` (events in a common key) and
``abc`` (characters)."""

from __future__ import annotations

from collections.abc import Sequence

from musicgen.tokenizers.abc import AbcTokenizer
from musicgen.tokenizers.base import Tokenizer
from musicgen.tokenizers.events import EventTokenizer
from musicgen.tokenizers.keyed import KeyedEventTokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {"events": EventTokenizer, "keyed": KeyedEventTokenizer, "abc": AbcTokenizer}


def make_tokenizer(name: str, styles: Sequence[str]) -> Tokenizer:
    try:
        return TOKENIZERS[name](styles)
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; choose from {', '.join(TOKENIZERS)}") from None


def tokenizer_from_dict(config: dict) -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.to_dict()`` and check the vocabulary still matches."""
    tokenizer = make_tokenizer(config["name"], config["styles"])
    if "vocab" in config and list(config["vocab"]) != tokenizer.vocab:
        raise ValueError("the saved vocabulary differs from this version of the tokenizer")
    return tokenizer


__all__ = ["Tokenizer", "EventTokenizer", "KeyedEventTokenizer", "AbcTokenizer",
           "TOKENIZERS", "make_tokenizer", "tokenizer_from_dict"]
