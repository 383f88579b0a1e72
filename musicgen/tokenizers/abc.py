"""A character-level ABC tokenizer, as in the char-RNN folk-tune models (Sturm et al., folk-rnn).

``<bos> STYLE_x M:6/8\\nL:1/8\\nK:Em\\nz5B | e2e fef | g3 f3 | e6 |] <eos>``, one token per character
(printable ASCII and newline), so any ABC a model writes can be spelled.

The text is the canonical ABC of :mod:`musicgen.music.abc` (headers, spelling in the key,
lengths, bar lines), so the same melody always gives the same characters and decoding is
exact; text sampled from a model always decodes to some melody. See docs/tokens.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from musicgen.music import abc
from musicgen.music.melody import Melody
from musicgen.tokenizers.base import Tokenizer


class AbcTokenizer(Tokenizer):
    """One token per character of canonical ABC text (folk-rnn style)."""

    name = "abc"

    def base_vocab(self) -> list[str]:
        return [chr(c) for c in range(32, 127)] + ["\n"]

    # -- encoding ---------------------------------------------------------
    def encode_body(self, melody: Melody) -> list[int]:
        return [self.index[c] for c in self.render(melody)]

    def render(self, melody: Melody) -> str:
        """Canonical ABC of the melody: M:, L:, K: lines, then the bars (:func:`musicgen.music.abc.render`)."""
        return abc.render(melody)

    def to_abc(self, melody: Melody, title: str | None = None) -> str:
        """A complete ABC 2.1 tune (:func:`musicgen.music.abc.to_abc`)."""
        return abc.to_abc(melody, title)

    def prompt(self, style: str, primer: Melody | None = None,
               time_signature: tuple[int, int] | None = None) -> tuple[list[int], int]:
        """``<bos> STYLE_x`` and the ABC text to go on from: a primer's tune without its closing ``|]``,
        or the headers of a requested meter; and the bar lines that text holds."""
        if primer is not None:
            text = self.render(primer).removesuffix("|]").rstrip()
        elif time_signature is not None:
            text = f"M:{time_signature[0]}/{time_signature[1]}\nL:1/8\n"
        else:
            text = ""
        ids = [self.bos_id, self.style_token(style), *(self.index[c] for c in text)]
        return ids, text.split("K:", 1)[-1].count("|") if text else 0

    def grammar(self):
        if self._grammar is None:
            from musicgen.tokenizers.grammar import AbcGrammar

            self._grammar = AbcGrammar(self)
        return self._grammar

    # -- decoding ---------------------------------------------------------
    def decode_body(self, ids: Sequence[int]) -> Melody:
        chars = []
        for i in ids:
            i = int(i)
            if 0 <= i < len(self.vocab) and len(self.vocab[i]) == 1:
                chars.append(self.vocab[i])  # special and style tokens are skipped
        return self.from_abc_text("".join(chars))

    def from_abc_text(self, text: str) -> Melody:
        """Parse the first tune of ABC text; unknown symbols are skipped, never fatal."""
        return abc.from_abc_text(text)
