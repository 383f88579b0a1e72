"""Bars sampled as copies of earlier bars: the motifs a tune repeats, in the sampling loop itself.

A model rarely repeats a bar exactly, where folk tunes do all the time (a bar in four of an Irish
strain repeats an earlier one). A request's ``copies`` say which bars repeat which (``--form auto``
draws them from a melody of the style with the same form). When a row opens such a bar, its next
tokens are the earlier bar's, token for token, and the model reads them as if it had sampled
them, so the melody goes on from the repeated bar as from its own. A bar is copied only from bar
line to bar line where no note sounds across either (the grammar's ``bar_opened``). A section's
last bar is copied too: real strains often close on the cadence bar of an earlier one.
"""

from __future__ import annotations

import numpy as np


class BarCopies:
    """The copies of one sampling loop, per row: ``seen`` after every token a row takes (prompt or
    sampled, after the grammar's ``advance``), ``apply`` to the tokens about to be taken, ``keep``
    when the loop drops finished rows."""

    def __init__(self, grammar, plans: list[dict[int, int]]):
        self.grammar = grammar
        self.plans = plans  # per row: bar -> the earlier bar it repeats
        self.bars: list[dict[int, list[int]]] = [{} for _ in plans]  # per row: whole bars' tokens
        self.open: list[tuple[int, list[int]] | None] = [None] * len(plans)  # the bar being written, if whole so far
        self.queue: list[list[int]] = [[] for _ in plans]  # tokens still to copy
        self._rows = [row for row, plan in enumerate(plans) if plan]

    def seen(self, state, tokens: np.ndarray) -> None:
        opened = self.grammar.bar_opened(state, tokens)
        for row in self._rows:
            bar = int(opened[row])
            if bar == -1:
                if self.open[row] is not None:
                    self.open[row][1].append(int(tokens[row]))
                continue
            if self.open[row] is not None:  # the bar before ends whole on this line
                self.bars[row][self.open[row][0]] = self.open[row][1]
            self.open[row] = (bar, []) if bar >= 0 else None
            source = self.plans[row].get(bar)
            if source in self.bars[row]:
                self.queue[row] = list(self.bars[row][source])

    def apply(self, tokens: np.ndarray) -> None:
        """Replace, in place, the token of each row that is copying a bar by the next one it copies."""
        for row in self._rows:
            if self.queue[row]:
                tokens[row] = self.queue[row].pop(0)

    def keep(self, rows: np.ndarray) -> None:
        """Go on with only these rows."""
        self.plans, self.bars, self.open, self.queue = (
            [values[i] for i in rows] for values in (self.plans, self.bars, self.open, self.queue))
        self._rows = [row for row, plan in enumerate(self.plans) if plan]
