"""A compact event vocabulary for monophonic melodies (the default tokenizer).

``<bos> STYLE_x TS_n/d BAR NOTE_p DUR_d ... REST DUR_d ... BAR ... <eos>``

Time is carried only by durations: a note or rest is followed by one or more
``DUR`` tokens whose tick values add up (greedy, largest first, so encoding is
canonical). ``BAR`` marks each bar line before the first event at or after it;
it is redundant for timing, which makes decoding exact and lets a sampler use
it as a grammar check. See docs/tokens.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from musicgen.music.melody import TICKS_PER_BEAT, Melody, Note, estimate_key
from musicgen.tokenizers.base import Tokenizer

DURATIONS = (*range(1, 4 * TICKS_PER_BEAT + 1), 60, 72, 84, 96, 120, 144, 192)
TIME_SIGNATURES = tuple((n, d) for d in (1, 2, 4, 8, 16) for n in range(1, 17))
_TIME_SIGNATURE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_time_signature(text: str) -> tuple[int, int]:
    """'6/8' -> (6, 8), for meters the tokenizers can write (1..16 over 1, 2, 4, 8 or 16)."""
    match = _TIME_SIGNATURE.fullmatch(text)
    if not match:
        raise ValueError(f"time_signature must look like '6/8', got {text!r}")
    meter = int(match[1]), int(match[2])
    if meter not in TIME_SIGNATURES:
        raise ValueError(f"time signature {text!r} is not supported: use 1..16 beats over 1, 2, 4, 8 or 16")
    return meter


class EventTokenizer(Tokenizer):
    name = "events"

    def base_vocab(self) -> list[str]:
        return [
            "BAR",
            "REST",
            *(f"NOTE_{p}" for p in range(128)),
            *(f"DUR_{d}" for d in DURATIONS),
            *(f"TS_{n}/{d}" for n, d in TIME_SIGNATURES),
        ]

    def __init__(self, styles: Sequence[str]):
        super().__init__(styles)
        self.bar_id = self.index["BAR"]
        self.rest_id = self.index["REST"]
        self.first_note_id = self.index["NOTE_0"]
        self.first_dur_id = self.index[f"DUR_{DURATIONS[0]}"]
        self.first_ts_id = self.index["TS_1/1"]
        self._dur_desc = sorted(DURATIONS, reverse=True)
        self._duration_ids: dict[int, list[int]] = {}

    # -- token classes, used by samplers for grammar masks ----------------
    def is_note(self, i: int) -> bool:
        return self.first_note_id <= i < self.first_note_id + 128

    def is_duration(self, i: int) -> bool:
        return self.first_dur_id <= i < self.first_dur_id + len(DURATIONS)

    def _durations(self, ticks: int) -> list[int]:
        """DUR token ids adding up to ``ticks``, largest first (memoised: few distinct lengths occur)."""
        cached = self._duration_ids.get(ticks)
        if cached is None:
            cached, rest = [], ticks
            for d in self._dur_desc:
                while rest >= d:
                    cached.append(self.first_dur_id + DURATIONS.index(d))
                    rest -= d
            self._duration_ids[ticks] = cached
        return cached

    def encode_body(self, melody: Melody) -> list[int]:
        if melody.time_signature not in TIME_SIGNATURES:
            raise ValueError(f"time signature {melody.time_signature} is not in the vocabulary")
        bar = melody.bar_ticks
        ids = [self.first_ts_id + TIME_SIGNATURES.index(melody.time_signature)]
        bar_id, rest_id, first_note = self.bar_id, self.rest_id, self.first_note_id
        durations = self._durations
        next_bar = 0  # the position of the next bar line still to be marked
        cursor = 0
        # the hot loop of preprocessing: bar marking is inlined rather than a nested function
        for pitch, onset, duration in melody.notes:
            if onset < cursor:
                raise ValueError("notes overlap: the events tokenizer needs a monophonic melody")
            if onset > cursor:
                while next_bar <= cursor:
                    ids.append(bar_id)
                    next_bar += bar
                ids.append(rest_id)
                ids += durations(onset - cursor)
            while next_bar <= onset:
                ids.append(bar_id)
                next_bar += bar
            ids.append(first_note + pitch)
            ids += durations(duration)
            cursor = onset + duration
        return ids

    def decode_body(self, ids: Sequence[int]) -> Melody:
        time_signature = (4, 4)
        notes: list[Note] = []
        cursor = 0
        pitch: int | None = None  # None: inside a rest; -1: nothing open
        length = 0

        def close() -> None:
            nonlocal cursor, length, pitch
            if pitch is not None and pitch >= 0 and length > 0:
                notes.append(Note(pitch, cursor, length))
            cursor += length
            length, pitch = 0, -1

        pitch = -1
        for i in ids:
            if self.is_duration(i):
                length += DURATIONS[i - self.first_dur_id]
            elif self.is_note(i):
                close()
                pitch = i - self.first_note_id
            elif i == self.rest_id:
                close()
                pitch = None
            elif self.first_ts_id <= i < self.first_ts_id + len(TIME_SIGNATURES):
                time_signature = TIME_SIGNATURES[i - self.first_ts_id]
            # BAR and stray special tokens carry no timing
        close()
        key = estimate_key([n.pitch for n in notes], [n.duration for n in notes])
        return Melody(tuple(notes), time_signature, key)
