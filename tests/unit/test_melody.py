import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.music.keys import key_from_sharps
from musicgen.music.melody import (
    Melody,
    MelodyBatch,
    Note,
    RawMelody,
    bar_ticks,
    estimate_key,
    interval_fingerprints,
    interval_fingerprints_many,
    quantise,
    quantise_many,
    skyline,
    snap,
)


def test_snap_keeps_sixteenths_and_triplets_and_fixes_jitter():
    assert list(snap(np.array([0, 3, 4, 6, 8, 9, 12]))) == [0, 3, 4, 6, 8, 9, 12]
    # a slightly late sixteenth, a slightly early triplet, and a position between grids
    assert list(snap(np.array([3.4, 7.7, 11.2, 13.0]))) == [3, 8, 12, 12]


def test_quantise_eighth_triplets_exactly():
    m = quantise([60, 62, 64], [0, 1 / 3, 2 / 3], [1 / 3] * 3)
    assert [(n.onset, n.duration) for n in m.notes] == [(0, 4), (4, 4), (8, 4)]


def test_quantise_moves_pickup_to_upbeat_and_drops_leading_bars():
    m = quantise([67, 72], [0, 1], [1, 4], time_signature=(3, 4), pickup_beats=2)
    assert m.notes[0].onset == 2 * 12 and m.notes[1].onset == 36  # upbeat, then the downbeat of bar 2
    later = quantise([60, 62], [8, 9], [1, 1], time_signature=(4, 4))
    assert later.notes[0].onset == 0  # two empty bars removed


def test_skyline_keeps_the_highest_note_and_cuts_overlaps():
    pitches, onsets = np.array([60, 64, 67, 62]), np.array([0, 0, 6, 12])
    kept, ends = skyline(pitches, onsets, np.array([12, 12, 24, 24]))
    assert list(zip(pitches[kept], onsets[kept], ends - onsets[kept])) == [(64, 0, 6), (67, 6, 6), (62, 12, 12)]


def test_skyline_keeps_the_melodies_of_a_batch_apart():
    """Two melodies starting together both keep their note; the first one's note is not cut by the second's."""
    pitches, onsets, ends = np.array([60, 72, 64]), np.array([0, 0, 6]), np.array([24, 12, 12])
    kept, cut = skyline(pitches, onsets, ends, segment=np.array([0, 1, 1]))
    assert list(zip(pitches[kept], cut)) == [(60, 24), (72, 6), (64, 12)]


@st.composite
def raw_melodies(draw) -> RawMelody:
    """Unquantised notes in beats: jittered, overlapping, any meter, with or without a known key."""
    n = draw(st.integers(1, 25))
    onsets = np.cumsum(draw(st.lists(st.floats(0, 2), min_size=n, max_size=n))) + draw(st.floats(0, 20))
    return RawMelody(
        np.array(draw(st.lists(st.integers(0, 127), min_size=n, max_size=n))),
        onsets,
        np.array(draw(st.lists(st.floats(0.01, 3), min_size=n, max_size=n))),
        draw(st.sampled_from([(4, 4), (3, 4), (6, 8), (9, 8), (5, 4), (2, 2)])),
        draw(st.sampled_from([None, None, "D minor", "Bb major"])),
        draw(st.sampled_from([100.0, 120.0])),
        draw(st.sampled_from([0.0, 0.0, 1.0, 2.5])),
        {"track": "t"},
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(raw_melodies(), min_size=1, max_size=6))
def test_a_batch_quantises_and_fingerprints_as_each_melody_alone(raws):
    batch = quantise_many(raws)
    alone = [quantise(*raw) for raw in raws]
    assert [batch.melody(i) for i in range(len(raws))] == alone
    assert [batch.melody(i).meta for i in range(len(raws))] == [m.meta for m in alone]
    assert batch.n_bars.tolist() == [m.n_bars for m in alone]
    full, head = interval_fingerprints_many(batch, 4)
    assert list(zip(full, head)) == [interval_fingerprints(m, 4) for m in alone]
    assert MelodyBatch.from_melodies(alone).melody(len(raws) - 1) == alone[-1]


def test_key_estimation_and_signatures():
    c_major = [60, 62, 64, 65, 67, 69, 71, 72]
    assert estimate_key(c_major, [1] * 8) == "C major"
    a_minor = [57, 59, 60, 62, 64, 65, 68, 69, 64, 57]
    assert estimate_key(a_minor, [1] * 10) == "A minor"
    assert key_from_sharps(1, False) == "G major" and key_from_sharps(-3, True) == "C minor"


def test_transpose_moves_pitches_and_key():
    m = Melody((Note(60, 0, 12), Note(64, 12, 12)), key="C major")
    up = m.transpose(7)
    assert [n.pitch for n in up.notes] == [67, 71] and up.key == "G major"
    with pytest.raises(ValueError):
        m.transpose(100)


def test_fingerprint_is_transposition_invariant():
    m = Melody((Note(60, 0, 6), Note(62, 6, 6), Note(64, 12, 12)))
    assert interval_fingerprints(m, 2) == interval_fingerprints(m.transpose(5), 2)
    other = Melody((Note(60, 0, 6), Note(62, 6, 6), Note(65, 12, 12)))
    full, head = interval_fingerprints(other, 2)
    assert full != interval_fingerprints(m, 2)[0]
    assert head == interval_fingerprints(m, 2)[1], "the first two notes are the same"
    assert interval_fingerprints(Melody((Note(60, 0, 6), Note(63, 6, 6))), 2)[1] != head


def test_bar_ticks():
    assert bar_ticks((4, 4)) == 48 and bar_ticks((6, 8)) == 36 and bar_ticks((3, 2)) == 72


def test_quantise_is_idempotent_even_for_notes_shorter_than_the_grid():
    m = quantise([60, 60, 62, 64], [4.5, 4.58, 4.67, 5.0], [0.05, 0.05, 0.05, 0.5], time_signature=(9, 8))
    again = quantise([n.pitch for n in m.notes], [n.onset / 12 for n in m.notes], [n.duration / 12 for n in m.notes],
                     (9, 8))
    assert again.notes == m.notes
    assert all(n.duration > 0 for n in m.notes)
