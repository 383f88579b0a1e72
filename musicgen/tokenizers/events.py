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

import numpy as np

from musicgen.music.melody import TICKS_PER_BEAT, Melody, MelodyBatch, Note, estimate_key
from musicgen.tokenizers.base import Tokenizer

DURATIONS = (*range(1, 4 * TICKS_PER_BEAT + 1), 60, 72, 84, 96, 120, 144, 192)
TIME_SIGNATURES = tuple((n, d) for d in (1, 2, 4, 8, 16) for n in range(1, 17))
_TIME_SIGNATURE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_TS_INDEX = {ts: i for i, ts in enumerate(TIME_SIGNATURES)}
_DURATION_INDEX = {d: i for i, d in enumerate(DURATIONS)}
_LONGEST = max(DURATIONS)


def _greedy_split(ticks: int) -> list[int]:
    """Indices of the DURATIONS adding up to ``ticks``, largest first (what makes encoding canonical)."""
    out = []
    for d in sorted(DURATIONS, reverse=True):
        while ticks >= d:
            out.append(_DURATION_INDEX[d])
            ticks -= d
    return out


# every length below the longest duration, split once: row r holds r's split, padded
_SPLITS = [_greedy_split(r) for r in range(_LONGEST)]
_SPLIT_LENGTH = np.array([len(split) for split in _SPLITS], dtype=np.int64)
_SPLIT = np.array([split + [0] * (_SPLIT_LENGTH.max() - len(split)) for split in _SPLITS], dtype=np.int64)


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

    def grammar(self):
        if self._grammar is None:
            from musicgen.tokenizers.grammar import EventGrammar

            self._grammar = EventGrammar(self)
        return self._grammar

    def _note_positions(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= self.first_note_id) & (ids < self.first_note_id + 128)

    def pitch_span(self, ids: np.ndarray) -> tuple[int, int] | None:
        pitches = ids[self._note_positions(ids)] - self.first_note_id
        return (int(pitches.min()), int(pitches.max())) if len(pitches) else None

    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray:
        shifted = ids.copy()
        shifted[self._note_positions(ids)] += semitones
        return shifted

    def pitch_sequences(self, values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
        """Read off the NOTE ids directly: decoding would also estimate each melody's key."""
        is_note = self._note_positions(values)
        notes_before = np.concatenate([[0], np.cumsum(is_note)])
        counts = notes_before[offsets[1:]] - notes_before[offsets[:-1]]
        return np.split((values[is_note] - self.first_note_id).astype(np.int16), np.cumsum(counts)[:-1])

    # -- token classes, used by samplers for grammar masks ----------------
    def is_note(self, i: int) -> bool:
        return self.first_note_id <= i < self.first_note_id + 128

    def is_duration(self, i: int) -> bool:
        return self.first_dur_id <= i < self.first_dur_id + len(DURATIONS)

    def encode_body(self, melody: Melody) -> list[int]:
        values, _, (error,) = self._encode(MelodyBatch.from_melodies([melody]))
        if error:
            raise ValueError(error)
        return values.tolist()

    def encode_many(self, batch: MelodyBatch, styles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        return self._encode(batch, np.array([self.style_token(s) for s in styles], dtype=np.int64))

    def _encode(
        self, batch: MelodyBatch, style_ids: np.ndarray | None = None, header: np.ndarray | None = None,
        shift: np.ndarray | None = None, errors: list[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """The events of every melody of a batch in a fixed number of NumPy calls.

        Each note is an event, preceded by a rest event where it starts after the
        previous note's end; before an event come the bar lines at or before its
        start not yet marked, and after its head (NOTE_p or REST) the greedy DUR
        split of its length. With ``style_ids`` each sequence is framed as
        ``<bos> STYLE_x ... <eos>``; without, it is the body alone. A subclass may add a ``header``
        token per melody after the time signature and write each melody's pitches ``shift``
        semitones lower (``errors`` it found already mark melodies to leave out).
        """
        n = len(batch)
        lead, tail = (3, 1) if style_ids is not None else (1, 0)
        lead += header is not None
        errors = list(errors) if errors is not None else [None] * n
        ts_ids = np.array([_TS_INDEX.get(ts, -1) for ts in batch.time_signatures], dtype=np.int64)
        for i in np.flatnonzero(ts_ids < 0).tolist():
            errors[i] = f"time signature {batch.time_signatures[i]} is not in the vocabulary"
        segment, starts = batch.segment, batch.offsets[:-1]
        first = np.zeros(len(segment), dtype=bool)
        first[starts[batch.n_notes > 0]] = True
        cursor = np.zeros(len(segment), dtype=np.int64)  # where the previous note of the melody ended
        cursor[1:] = (batch.onsets + batch.durations)[:-1]
        cursor[first] = 0
        for i in np.unique(segment[batch.onsets < cursor]).tolist():
            errors[i] = errors[i] or "notes overlap: the events tokenizer needs a monophonic melody"
        ok = np.array([e is None for e in errors], dtype=bool)
        keep = ok[segment]
        segment, onset, cursor = segment[keep], batch.onsets[keep], cursor[keep]
        # events: a rest (where there is a gap) then the note, for every note
        event_segment = np.repeat(segment, 2)
        event_start = np.stack([cursor, onset], axis=1).ravel()
        event_length = np.stack([onset - cursor, batch.durations[keep]], axis=1).ravel()
        pitches = batch.pitches[keep] - (shift[segment] if shift is not None else 0)
        event_head = np.stack([np.full(len(onset), self.rest_id), self.first_note_id + pitches], axis=1).ravel()
        is_event = event_length > 0
        is_event[1::2] = True  # a note is an event even when it would be too short to sound
        event_segment, event_start, event_length, event_head = (
            x[is_event] for x in (event_segment, event_start, event_length, event_head)
        )
        bars_so_far = event_start // batch.bar_ticks[event_segment] + 1  # bar lines at or before the start
        opens = np.ones(len(event_segment), dtype=bool)
        opens[1:] = event_segment[1:] != event_segment[:-1]
        new_bars = bars_so_far - np.where(opens, 0, np.roll(bars_so_far, 1))
        whole, remainder = np.divmod(event_length, _LONGEST)
        n_durations = whole + _SPLIT_LENGTH[remainder]
        size = new_bars + 1 + n_durations
        totals = np.where(ok, lead + tail + np.bincount(event_segment, weights=size, minlength=n).astype(np.int64), 0)
        offsets = np.concatenate([[0], np.cumsum(totals)])
        before = np.cumsum(size) - size
        first_before = np.zeros(n, dtype=np.int64)
        first_before[event_segment[opens]] = before[opens]
        head_at = offsets[event_segment] + lead + before - first_before[event_segment] + new_bars
        values = np.full(offsets[-1], self.bar_id, dtype=np.int64)
        values[head_at] = event_head
        # the DUR tokens: ``whole`` of the longest, then the remainder's greedy split
        which = np.repeat(np.arange(len(event_head)), n_durations)
        slot = np.arange(len(which)) - np.repeat(np.cumsum(n_durations) - n_durations, n_durations)
        extra = slot - whole[which]
        values[head_at[which] + 1 + slot] = self.first_dur_id + np.where(
            extra < 0, _DURATION_INDEX[_LONGEST], _SPLIT[remainder[which], np.maximum(extra, 0)]
        )
        begin, end = offsets[:-1][ok], offsets[1:][ok]
        if style_ids is not None:
            values[begin] = self.bos_id
            values[begin + 1] = style_ids[ok]
            begin = begin + 2
            values[end - 1] = self.eos_id
        values[begin] = self.first_ts_id + ts_ids[ok]
        if header is not None:
            values[begin + 1] = header[ok]
        return values, offsets, errors

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
