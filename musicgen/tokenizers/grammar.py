"""Grammar masks: which tokens may come next, for a whole batch at once, so every sample decodes.

Each tokenizer owns its grammar (``Tokenizer.grammar()``): the grammar is part of the token
layout, like the ids and the prompt. Every grammar has the same interface, so a sampler never
asks which tokenizer it has: ``start(bars, time_signatures, prompt_bar_lines, keys, open_on_a_note)``,
``allowed``, ``advance``, ``bar_opened`` and ``max_new_tokens(bars, time_signatures)``.

A sampler asks ``allowed(state) -> bool[B, V]`` before each step and calls
``advance(state, tokens)`` after it. Both are a handful of array operations
over the batch (no Python loop over melodies), and the state is a few
integer arrays. They run in NumPy on the host whatever device the model is
on: each is ~30 small operations on [B] or [B, V] arrays, which NumPy does in
about 1 µs apiece where torch's dispatcher spends 5-10 µs, and at batch 1 the
mask otherwise cost more than the model step (benchmarks: docs/benchmarks.md).

The events grammar (see ``musicgen.tokenizers.events``) is enforced exactly:
one time signature, bar lines marked before the first event at or after them,
every NOTE/REST followed by durations, onsets kept on the 12-tick grid
(sixteenths and eighth-triplets), no two rests in a row, and the melody filling
exactly the requested number of bars and ending on a note. Generation therefore
always stops, after at most ``2 * ticks + bars + 2`` tokens.

The ABC grammar is loose (the ABC reader skips what it does not understand):
no special tokens inside the text, and the tune is closed with ``|]`` once the
requested number of bar lines is written or the length budget runs out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from musicgen.music.melody import ONSET_GRID, TICKS_PER_BEAT, bar_ticks
from musicgen.tokenizers.abc import AbcTokenizer
from musicgen.tokenizers.base import Tokenizer
from musicgen.tokenizers.events import DURATIONS, TIME_SIGNATURES, EventTokenizer

SINGLE_ROW_MASKS = 1 << 15  # masks the events grammar remembers for batches of one (~600 bytes each with key)
GRID = ONSET_GRID  # onsets within a beat that quantisation keeps

# phases of the events grammar
NEED_TIME_SIGNATURE, BOUNDARY, NEED_DURATION, AFTER_DURATION, NEED_KEY = 0, 1, 2, 3, 4
# token kinds, and the phase each one leads to (-1: unchanged)
OTHER, TIME_SIGNATURE, BAR, NOTE, REST, DURATION, EOS, KEY = range(8)
_PHASE_AFTER = (-1, BOUNDARY, BOUNDARY, NEED_DURATION, NEED_DURATION, AFTER_DURATION, -1, BOUNDARY)


def select_rows(state, rows: np.ndarray):
    """The grammar state of only these rows (every field of a state is a per-row array)."""
    return replace(state, **{f.name: getattr(state, f.name)[rows] for f in fields(state)})


@dataclass
class EventState:
    phase: np.ndarray  # [B] one of the phases above
    cursor: np.ndarray  # ticks written so far
    next_bar: np.ndarray  # position of the next bar line not yet marked with BAR
    bar: np.ndarray  # ticks per bar (0 until the time signature is known)
    bars: np.ndarray  # requested length in bars
    last_duration: np.ndarray  # the DUR just written (later DURs of one event may not be longer)
    in_rest: np.ndarray  # bool: the current (or last) event is a rest
    forced_ts: np.ndarray  # time-signature token id to force, -1 to let the model choose
    forced_key: np.ndarray  # KEY token id to force (a vocabulary with keys), -1 to let the model choose
    done: np.ndarray  # bool: <eos> written


class EventGrammar:
    def __init__(self, tokenizer: EventTokenizer, pitch_range: tuple[int, int] = (21, 108)):
        self.tokenizer = tokenizer
        V = len(tokenizer)
        ids = np.arange(V)
        first_note, first_dur, first_ts = tokenizer.first_note_id, tokenizer.first_dur_id, tokenizer.first_ts_id
        low, high = pitch_range
        self.note_ok = (ids >= first_note + low) & (ids <= first_note + high)
        is_note = (ids >= first_note) & (ids < first_note + 128)
        self.is_duration = (ids >= first_dur) & (ids < first_dur + len(DURATIONS))
        self.duration = np.zeros(V, dtype=np.int64)
        self.duration[first_dur : first_dur + len(DURATIONS)] = DURATIONS
        self.is_ts = (ids >= first_ts) & (ids < first_ts + len(TIME_SIGNATURES))
        self.ts_bar = np.zeros(V, dtype=np.int64)
        self.ts_bar[first_ts : first_ts + len(TIME_SIGNATURES)] = [bar_ticks(ts) for ts in TIME_SIGNATURES]
        on_grid = np.zeros(TICKS_PER_BEAT, dtype=bool)
        on_grid[list(GRID)] = True
        # [position in the beat, token]: where in the beat the token's duration ends, written there
        ends = (np.arange(TICKS_PER_BEAT)[:, None] + self.duration[None, :]) % TICKS_PER_BEAT
        self.longest = max(DURATIONS)
        # [position in the beat, longest duration allowed (capped), token]: the DUR tokens that fit and end on the grid
        self.durations_allowed = ((self.is_duration & on_grid[ends])[:, None, :]
                                  & (self.duration[None, None, :] <= np.arange(self.longest + 1)[None, :, None]))
        self.to_next_grid = np.array(
            [min(g for g in (*GRID, TICKS_PER_BEAT) if g > t) - t for t in range(TICKS_PER_BEAT)]
        )
        self.kind = np.full(V, OTHER)
        self.kind[self.is_ts], self.kind[is_note], self.kind[self.is_duration] = TIME_SIGNATURE, NOTE, DURATION
        self.kind[[tokenizer.bar_id, tokenizer.rest_id, tokenizer.eos_id]] = [BAR, REST, EOS]
        self.key_ids = tokenizer.key_tokens()  # a KEY token follows the time signature where there are any
        self.is_key = np.isin(ids, self.key_ids)
        self.kind[self.is_key] = KEY
        self.phase_after = np.array(_PHASE_AFTER)
        if len(self.key_ids):
            self.phase_after[TIME_SIGNATURE] = NEED_KEY
        phases = np.arange(5)  # by phase: between events, and inside one (its durations being written)
        self.at_boundary = (phases == BOUNDARY) | (phases == AFTER_DURATION)
        self.in_event = (phases == NEED_DURATION) | (phases == AFTER_DURATION)
        self.ids = ids
        self.pad, self.eos = tokenizer.pad_id, tokenizer.eos_id
        self.bar_id, self.rest_id = tokenizer.bar_id, tokenizer.rest_id
        self._single_row_masks: dict[bytes, np.ndarray] = {}

    def ts_token(self, time_signature: tuple[int, int]) -> int:
        if tuple(time_signature) not in TIME_SIGNATURES:
            raise ValueError(f"time signature {time_signature[0]}/{time_signature[1]} is not in the vocabulary")
        return self.tokenizer.first_ts_id + TIME_SIGNATURES.index(tuple(time_signature))

    def start(self, bars: list[int], time_signatures: list[tuple[int, int] | None],
              prompt_bar_lines: list[int] | None = None, keys: list[str | None] | None = None,
              open_on_a_note: list[bool] | None = None) -> EventState:
        """Rows at the start of their bodies; the prompt's own tokens (a primer) go through ``advance``.
        A requested meter, and a requested key where the vocabulary has KEY tokens, are forced; rows
        with ``open_on_a_note`` may not open with a rest (a loop: no silence at its seam)."""
        B = len(bars)

        def zeros(dtype=np.int64):
            return np.zeros(B, dtype=dtype)

        forced = np.array([self.ts_token(ts) if ts else -1 for ts in time_signatures])
        keyed = len(self.key_ids) > 0
        forced_key = np.array([self.tokenizer.key_token(k) if k and keyed else -1 for k in keys or [None] * B])
        return EventState(phase=zeros(), cursor=zeros(), next_bar=zeros(), bar=zeros(),
                          bars=np.array(bars, dtype=np.int64), last_duration=zeros(),
                          # as if after a rest: a rest may not come next (rests merge), so the first event is a note
                          in_rest=np.array(open_on_a_note or [False] * B, dtype=bool),
                          forced_ts=forced, forced_key=forced_key, done=zeros(bool))

    def allowed(self, s: EventState) -> np.ndarray:
        """The mask ``[B, V]``. A batch of one (a Serve replica at low load) looks its state up among
        the masks made before, shared and so read-only: ~2 µs where making one costs 35-90 µs, and
        states recur across requests (16-bar melodies: after 200 requests ~87 % are found)."""
        if len(s.phase) != 1:
            return self._allowed(s)
        key = b"".join(getattr(s, f.name).tobytes() for f in fields(s))
        mask = self._single_row_masks.get(key)
        if mask is None:
            if len(self._single_row_masks) >= SINGLE_ROW_MASKS:
                self._single_row_masks.clear()
            mask = self._single_row_masks[key] = self._allowed(s)
            mask.flags.writeable = False
        return mask

    def _allowed(self, s: EventState) -> np.ndarray:
        # few NumPy calls: at batch 1 each costs more than its arithmetic, and this runs once per token
        total = s.bars * s.bar
        remaining = total - s.cursor
        in_beat = s.cursor % TICKS_PER_BEAT
        after_duration = s.phase == AFTER_DURATION
        boundary = self.at_boundary[s.phase]
        at_end = boundary & (s.cursor >= total)
        open_ = boundary & ~at_end
        need_bar = open_ & (s.next_bar <= s.cursor)
        free = open_ ^ need_bar
        # a rest ends on the grid before the end (a melody ends on a note) and never follows a rest (rests merge)
        rest_ok = free & ~s.in_rest & (remaining > self.to_next_grid[in_beat])

        limit = remaining - s.in_rest  # a rest leaves a tick for the closing note
        limit = np.where(after_duration, np.minimum(limit, s.last_duration), limit)
        # no duration outside an event
        limit = np.where(self.in_event[s.phase], np.minimum(np.maximum(limit, 0), self.longest), 0)
        mask = self.durations_allowed[in_beat, limit]
        mask |= free[:, None] & self.note_ok
        wants_ts = (s.phase == NEED_TIME_SIGNATURE) & ~s.done
        if wants_ts.any():
            mask |= wants_ts[:, None] & np.where(s.forced_ts[:, None] >= 0, self.ids[None, :] == s.forced_ts[:, None],
                                                 self.is_ts[None, :])
        wants_key = s.phase == NEED_KEY
        if wants_key.any():
            mask |= wants_key[:, None] & np.where(s.forced_key[:, None] >= 0,
                                                  self.ids[None, :] == s.forced_key[:, None], self.is_key[None, :])
        mask[:, self.bar_id] |= need_bar
        mask[:, self.rest_id] |= rest_ok
        mask[:, self.eos] |= at_end
        if s.done.any():  # only <pad> after <eos>
            mask[s.done] = self.ids == self.pad
        return mask

    def advance(self, s: EventState, tokens: np.ndarray) -> None:
        kind = self.kind[tokens]  # <pad> after <eos> is OTHER: it changes nothing
        new_phase = self.phase_after[kind]
        s.phase = np.where(new_phase >= 0, new_phase, s.phase)
        s.bar += self.ts_bar[tokens]  # 0 except on the one time-signature token
        s.next_bar += (kind == BAR) * s.bar
        s.in_rest = np.where(kind == NOTE, False, s.in_rest | (kind == REST))
        d = self.duration[tokens]  # 0 except on DUR tokens
        s.cursor += d
        s.last_duration = np.where(d > 0, d, s.last_duration)
        s.done |= kind == EOS

    def bar_opened(self, s: EventState, tokens: np.ndarray) -> np.ndarray:
        """After ``advance(s, tokens)``: per row, the bar whose line a BAR token just marked where nothing
        sounds across that line (so the bar's tokens, up to the next such line, are the whole bar and
        can be copied elsewhere); -2 where a BAR came after a note held across its line; -1 elsewhere."""
        line = s.next_bar - s.bar
        return np.where(self.kind[tokens] == BAR, np.where(s.cursor == line, line // np.maximum(s.bar, 1), -2), -1)

    def max_new_tokens(self, bars: list[int], time_signatures: list[tuple[int, int] | None]) -> int:
        """An upper bound on the body length: every event is >= 2 tokens and >= 1 tick."""
        widest = max(bar_ticks(ts) if ts else max(bar_ticks(t) for t in TIME_SIGNATURES)
                     for ts in time_signatures)
        return 2 * max(bars) * widest + max(bars) + 3 + (len(self.key_ids) > 0)


@dataclass
class AbcState:
    bar_lines: np.ndarray  # [B] '|' characters written in the tune body
    bars: np.ndarray
    closing: np.ndarray  # [B] 0: writing, 1: ']' next, 2: <eos> next
    after_bar: np.ndarray  # [B] bool: the last character was '|' (so ']' ends the tune)
    left: np.ndarray  # [B] tokens left in the length budget
    done: np.ndarray


class AbcGrammar:
    """Characters only inside the text, which ends with ``|]`` then <eos>: when the model writes
    ``|]``, or is made to once the requested bar lines (or the length budget) are used."""

    def __init__(self, tokenizer: AbcTokenizer, chars_per_bar: int = 48):
        self.tokenizer = tokenizer
        self.chars_per_bar = chars_per_bar
        V = len(tokenizer)
        self.text_ok = np.zeros(V, dtype=bool)
        self.text_ok[Tokenizer.eos_id + 1 : tokenizer.first_style_id] = True
        self.bar_char, self.close_char = tokenizer.index["|"], tokenizer.index["]"]
        self.pad, self.eos = tokenizer.pad_id, tokenizer.eos_id
        self.ids = np.arange(V)

    def start(self, bars: list[int], time_signatures: list[tuple[int, int] | None] | None = None,
              prompt_bar_lines: list[int] | None = None, keys: list[str | None] | None = None,
              open_on_a_note: list[bool] | None = None) -> AbcState:
        """Rows after their prompts, whose text holds ``prompt_bar_lines`` bar lines (the meter is in the text;
        the loose ABC grammar does not enforce ``open_on_a_note``)."""
        B = len(bars)
        return AbcState(bar_lines=np.array(prompt_bar_lines or [0] * B, dtype=np.int64),
                        bars=np.array(bars, dtype=np.int64),
                        closing=np.zeros(B, dtype=np.int64), after_bar=np.zeros(B, dtype=bool),
                        left=np.full(B, self.max_new_tokens(bars), dtype=np.int64), done=np.zeros(B, dtype=bool))

    def allowed(self, s: AbcState) -> np.ndarray:
        writing = ~s.done & (s.closing == 0)
        mask = writing[:, None] & self.text_ok[None, :]  # the model ends a tune by writing "|]"
        out_of_budget = writing & (s.left <= 3)  # room for exactly "|]<eos>"
        forced = np.where(s.closing == 1, self.close_char, np.where(s.closing == 2, self.eos, self.pad))
        forced = np.where(out_of_budget, self.bar_char, forced)
        force = s.done | (s.closing > 0) | out_of_budget
        return np.where(force[:, None], self.ids[None, :] == forced[:, None], mask)

    def advance(self, s: AbcState, tokens: np.ndarray) -> None:
        live = ~s.done
        s.done = s.done | (tokens == self.eos)
        s.closing = np.where(live & (s.closing == 1), 2, s.closing)
        is_bar = live & (tokens == self.bar_char) & (s.closing == 0)
        s.bar_lines = s.bar_lines + is_bar
        s.closing = np.where(is_bar & ((s.bar_lines >= s.bars) | (s.left <= 3)), 1, s.closing)
        s.closing = np.where(live & s.after_bar & (tokens == self.close_char), 2, s.closing)
        s.after_bar = is_bar
        s.left = s.left - 1

    def bar_opened(self, s: AbcState, tokens: np.ndarray) -> np.ndarray:
        """-1 for every row: ABC text marks bar lines, but not where its notes' lengths put them, so no
        bar is known to be whole (see ``EventGrammar.bar_opened``)."""
        return np.full(len(tokens), -1)

    def max_new_tokens(self, bars: list[int], time_signatures: list[tuple[int, int] | None] | None = None) -> int:
        return max(bars) * self.chars_per_bar + 32
