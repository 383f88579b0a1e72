"""Round trips of the events tokenizer: hand-built, property-based and over real corpus files."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.music.melody import Melody, MelodyBatch, Note, quantise
from musicgen.music.midi import read_midi, write_midi
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.tokenizers.events import EventTokenizer
from tests.conftest import melodies

TOK = EventTokenizer(["folk", "chorale"])


def test_layout_of_a_small_melody():
    m = Melody((Note(67, 6, 6), Note(72, 12, 36), Note(71, 60, 12)), (3, 4))
    names = [TOK.vocab[i] for i in TOK.encode(m, "folk")]
    assert names == [
        "<bos>", "STYLE_folk", "TS_3/4", "BAR", "REST", "DUR_6", "NOTE_67", "DUR_6",
        "NOTE_72", "DUR_36", "BAR", "REST", "DUR_12", "NOTE_71", "DUR_12", "<eos>",
    ]


def test_long_durations_are_sums_of_duration_tokens():
    m = Melody((Note(60, 0, 250),), (4, 4))
    names = [TOK.vocab[i] for i in TOK.encode_body(m)]
    assert names == ["TS_4/4", "BAR", "NOTE_60", "DUR_192", "DUR_48", "DUR_10"]
    assert TOK.decode_body(TOK.encode_body(m)).notes == m.notes


@settings(max_examples=300, deadline=None)
@given(melodies())
def test_round_trip_random_melodies(melody):
    decoded, style = TOK.decode(TOK.encode(melody, "chorale"))
    assert decoded.notes == melody.notes
    assert decoded.time_signature == melody.time_signature
    assert style == "chorale"


@settings(max_examples=60, deadline=None)
@given(melodies(max_notes=20))
def test_round_trip_through_midi_bytes(raw):
    """A quantised melody -> tokens -> MIDI file -> read back: the same notes."""
    melody = quantise(
        [n.pitch for n in raw.notes],
        [n.onset / 12 for n in raw.notes],
        [n.duration / 12 for n in raw.notes],
        time_signature=raw.time_signature,
    )
    decoded, _ = TOK.decode(TOK.encode(melody, "folk"))
    assert read_midi(write_midi([("Melody", decoded)])).notes == melody.notes


@settings(max_examples=100, deadline=None)
@given(st.lists(melodies(max_notes=15), min_size=1, max_size=6), st.data())
def test_a_batch_encodes_as_each_melody_alone(batch, data):
    """The vectorised batch encoder gives every melody the tokens (or the error) it gets alone,
    unsupported meters and overlapping notes included, without disturbing its neighbours."""
    odd_ones = [Melody((Note(60, 0, 12),), (3, 5)), Melody((Note(60, 0, 12), Note(62, 6, 12)))]
    for odd in odd_ones:
        batch.insert(data.draw(st.integers(0, len(batch))), odd)
    styles = [data.draw(st.sampled_from(TOK.styles)) for _ in batch]
    values, offsets, errors = TOK.encode_many(MelodyBatch.from_melodies(batch), styles)
    for i, (melody, style) in enumerate(zip(batch, styles)):
        if melody in odd_ones:
            assert errors[i] and offsets[i] == offsets[i + 1]
            with pytest.raises(ValueError, match=re.escape(errors[i])):
                TOK.encode(melody, style)
        else:
            assert errors[i] is None
            assert values[offsets[i] : offsets[i + 1]].tolist() == TOK.encode(melody, style)


def test_overlapping_notes_are_refused():
    with pytest.raises(ValueError, match="monophonic"):
        TOK.encode_body(Melody((Note(60, 0, 12), Note(62, 6, 12))))


def test_unknown_style_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown style 'jazz'"):
        TOK.encode(Melody((Note(60, 0, 12),)), "jazz")


def test_config_round_trip_and_vocab_check():
    config = TOK.to_dict()
    assert tokenizer_from_dict(config).vocab == TOK.vocab
    config["vocab"] = config["vocab"][:-1] + ["STYLE_other"]
    with pytest.raises(ValueError, match="vocabulary"):
        tokenizer_from_dict(config)
