"""Events in a common key: every melody written as if its tonic were C, after a KEY token naming its own key.

``<bos> STYLE_x TS_n/d KEY_<tonic>_<mode> BAR NOTE_p DUR_d ... <eos>``

The ``events`` vocabulary spells pitches absolutely, so a model learns each key's scale
apart; folk-rnn transposes every tune to one key before training for that reason. Here the
body is the ``events`` body moved down by the tonic (C..F# down, G..B up, so a melody moves at
most six semitones), and the KEY token says how to move it back: the round trip stays exact,
a model learns one scale per mode, and the sampler can ask for a key by forcing its token.
The key is the melody's own (from the score, or estimated at ingest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicgen.music.keys import PITCH_CLASS_NAMES, key_name, parse_key
from musicgen.music.melody import Melody, MelodyBatch
from musicgen.tokenizers.events import EventTokenizer

MODES = ("major", "minor")
KEY_TOKENS = tuple(f"KEY_{PITCH_CLASS_NAMES[pc]}_{mode}" for mode in MODES for pc in range(12))


def tonic_shift(tonic_pc: int) -> int:
    """Semitones a melody with this tonic is written lower (negative: higher): nearest to C."""
    return tonic_pc if tonic_pc <= 6 else tonic_pc - 12


class KeyedEventTokenizer(EventTokenizer):
    name = "keyed"

    def base_vocab(self) -> list[str]:
        return [*super().base_vocab(), *KEY_TOKENS]

    def __init__(self, styles: Sequence[str]):
        super().__init__(styles)
        self.first_key_id = self.index[KEY_TOKENS[0]]
        ids = np.arange(len(self.vocab))
        self._key_positions = (ids >= self.first_key_id) & (ids < self.first_key_id + len(KEY_TOKENS))
        self._shift_of = np.zeros(len(self.vocab), dtype=np.int64)  # a KEY token's shift, 0 for other ids
        shifts = [tonic_shift(pc) for _ in MODES for pc in range(12)]
        self._shift_of[self.first_key_id : self.first_key_id + len(KEY_TOKENS)] = shifts

    def key_token(self, key: str) -> int:
        tonic, mode = parse_key(key)
        return self.first_key_id + 12 * MODES.index(mode) + tonic

    def key_tokens(self) -> np.ndarray:
        return np.flatnonzero(self._key_positions)

    def _encode(self, batch: MelodyBatch, style_ids: np.ndarray | None = None, **_) -> tuple:
        keys = np.array([self.key_token(k) for k in batch.keys], dtype=np.int64)
        shift = self._shift_of[keys]
        moved = batch.pitches - shift[batch.segment]
        errors: list[str | None] = [None] * len(batch)
        for i in np.unique(batch.segment[(moved < 0) | (moved > 127)]).tolist():
            errors[i] = f"a pitch leaves the MIDI range when the melody in {batch.keys[i]} is written in C"
        return super()._encode(batch, style_ids, header=keys, shift=shift, errors=errors)

    def decode_body(self, ids: Sequence[int]) -> Melody:
        """The events body moved back up by the first KEY token's tonic, in that key (C major without one)."""
        ids = np.asarray(ids, dtype=np.int64)
        keys = ids[(ids >= 0) & (ids < len(self.vocab))]
        keys = keys[self._key_positions[keys]]
        melody = super().decode_body(ids.tolist())
        if not len(keys):
            return melody
        index = int(keys[0]) - self.first_key_id
        shift = tonic_shift(index % 12)
        notes = tuple(n._replace(pitch=n.pitch + shift) for n in melody.notes if 0 <= n.pitch + shift <= 127)
        return Melody(notes, melody.time_signature, key_name(index % 12, MODES[index // 12]))

    def pitch_span(self, ids: np.ndarray) -> tuple[int, int] | None:
        return None  # moving the melody changes its KEY token, not its body: nothing to learn from

    def pitch_sequences(self, values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
        """Read off the NOTE ids, each moved back by its sequence's KEY token."""
        segment = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        shift = np.zeros(len(offsets) - 1, dtype=np.int64)
        is_key = self._key_positions[values]
        shift[segment[is_key][::-1]] = self._shift_of[values[is_key]][::-1]  # the first KEY token wins
        is_note = self._note_positions(values)
        pitches = (values[is_note] - self.first_note_id + shift[segment[is_note]]).astype(np.int16)
        counts = np.bincount(segment[is_note], minlength=len(offsets) - 1)
        return np.split(pitches, np.cumsum(counts)[:-1])
