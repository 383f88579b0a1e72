"""Cutting an ABC file into its tunes.

An ABC file is often a tune book (Essen, O'Neill's, Nottingham style): many tunes, each starting
at an ``X:`` line, sharing the fields written before the first one. This module only cuts the text
(no music21, nothing parsed), so the notation reader (:mod:`musicgen.music.notation`) and the corpus
export (:mod:`musicgen.data.corpus`) cut a book the same way, one broken tune costing only itself.
The canonical ABC text of one :class:`Melody` is :mod:`musicgen.music.abc`'s business, not this one's.
"""

from __future__ import annotations

import re

X_LINE = re.compile(r"^X:\s*(.*)$")
_FIELD_OR_DIRECTIVE = re.compile(r"^(?:[A-Za-z+]:|%)")


def split_abc_tunes(text: str) -> list[str]:
    """Split a (possibly multi-tune) ABC text into one text per tune.

    A tune starts at an ``X:`` line and runs to the next one. Field and
    directive lines (``L:``, ``M:``, ``%%...``, ``%`` comments) found before
    the first ``X:`` form the file header and are repeated after the ``X:``
    line of every tune, where the tune's own fields override them; free text
    before the first tune is dropped. A text without any ``X:`` line is
    returned whole as one tune (or nothing, if blank).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if X_LINE.match(line)]
    if not starts:
        return [text.strip() + "\n"] if text.strip() else []
    header = [ln for ln in lines[: starts[0]] if ln.strip() and _FIELD_OR_DIRECTIVE.match(ln)]
    tunes = []
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        body = lines[a + 1 : b]
        while body and not body[-1].strip():
            body.pop()
        tunes.append("\n".join([lines[a], *header, *body]) + "\n")
    return tunes


def abc_tune_number(tune: str) -> int | str | None:
    """The ``X:`` reference number of one ABC tune (an int when numeric)."""
    for line in tune.split("\n", 3)[:3]:
        m = X_LINE.match(line)
        if m:
            x = m.group(1).strip()
            return int(x) if x.isdigit() else (x or None)
    return None
