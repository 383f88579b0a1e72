"""The contract every registered tokenizer keeps (MidiTok-style): a new tokenizer in ``TOKENIZERS``
is tested here without a line of its own. It owns its token layout: the round trip, the prompt,
the sampling grammar, the scored targets, and what the data and copy-check code ask of its ids."""

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.data.collate import Collate, windows
from musicgen.music.midi import read_midi, write_midi
from musicgen.tokenizers import TOKENIZERS, make_tokenizer
from musicgen.tokenizers.base import STYLE_POSITION, scored_positions
from musicgen.tokenizers.targets import PAD_ID, hide_style, inputs_and_targets
from tests.conftest import melodies

STYLES = ("folk", "chorale")
NAMES = sorted(TOKENIZERS)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None)
@given(melody=melodies())
def test_exact_round_trip_of_any_melody(name, melody):
    tok = make_tokenizer(name, STYLES)
    decoded, style = tok.decode(tok.encode(melody, "chorale"))
    assert (decoded.notes, decoded.time_signature, style) == (melody.notes, melody.time_signature, "chorale")


@pytest.mark.parametrize("name", NAMES)
def test_exact_round_trip_of_real_corpus_files(real_corpus, name):
    """Every exported real file -> melody -> tokens -> melody -> MIDI -> the same melody."""
    files = sorted(p for p in real_corpus.rglob("*.mid"))
    styles = sorted({p.parent.name for p in files})
    tok = make_tokenizer(name, styles)
    assert len(styles) >= 5 and len(files) >= 15
    for path in files:
        melody = read_midi(path.read_bytes())
        decoded, style = tok.decode(tok.encode(melody, path.parent.name))
        assert style == path.parent.name
        assert (decoded.notes, decoded.time_signature) == (melody.notes, melody.time_signature), path
        assert read_midi(write_midi([("Melody", decoded)])).notes == melody.notes, path


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), bars=st.integers(1, 6), meter=st.sampled_from([(4, 4), (6, 8), (3, 4), None]))
def test_the_grammar_never_dead_ends_from_the_prompt(name, seed, bars, meter):
    """Any path the grammar allows, from the tokenizer's own prompt, ends with <eos> within its bound
    and decodes to a melody of the prompt's style."""
    tok = make_tokenizer(name, STYLES)
    prompt, bar_lines = tok.prompt("folk", time_signature=meter)
    assert prompt[0] == tok.bos_id and prompt[STYLE_POSITION] == tok.style_token("folk")
    grammar = tok.grammar()
    assert grammar is tok.grammar()  # built once
    state = grammar.start([bars], [meter], [bar_lines])
    for token in prompt[STYLE_POSITION + 1 :]:
        grammar.advance(state, np.array([token]))
    rng, sequence = random.Random(seed), list(prompt)
    for _ in range(grammar.max_new_tokens([bars], [meter])):
        allowed = np.flatnonzero(grammar.allowed(state)[0]).tolist()
        assert allowed, "some token is always allowed"
        sequence.append(rng.choice(allowed))
        grammar.advance(state, np.array(sequence[-1:]))
        if state.done[0]:
            break
    assert sequence[-1] == tok.eos_id
    _, style = tok.decode(sequence)
    assert style == "folk"


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(melody=melodies(max_notes=30), max_len=st.integers(4, 64))
def test_training_and_validation_score_the_same_tokens(name, melody, max_len):
    """The batched targets (training's loss and validation) score exactly ``scored_positions`` of
    every window validation and the n-gram cut a melody into; style hiding touches only the style."""
    tok = make_tokenizer(name, STYLES)
    sequence = tok.encode(melody, "folk")
    for window in windows(sequence, max_len):
        tokens = torch.tensor([window])
        _, targets = inputs_and_targets(tokens)
        scored = [i + 1 for i in range(targets.size(1)) if targets[0, i] != PAD_ID]
        assert scored == list(scored_positions(window))
        hidden = hide_style(tokens, torch.tensor([True]))
        changed = (hidden != tokens).nonzero()[:, 1].tolist()
        assert changed == ([STYLE_POSITION] if window[0] == tok.bos_id else [])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(batch=st.lists(melodies(max_notes=20), min_size=1, max_size=5), shift=st.integers(-3, 3))
def test_pitches_and_transposition_agree_with_decoding(name, batch, shift):
    tok = make_tokenizer(name, STYLES)
    sequences = [tok.encode(m, "folk") for m in batch]
    offsets = np.cumsum([0, *map(len, sequences)])
    values = np.concatenate(sequences).astype(np.int64)
    for pitches, sequence in zip(tok.pitch_sequences(values, offsets), sequences):
        assert pitches.tolist() == [n.pitch for n in tok.decode(sequence)[0].notes]
    ids = np.array(sequences[0], dtype=np.int64)
    span = tok.pitch_span(ids)
    if span is None:  # this vocabulary's ids cannot be moved: training leaves its melodies as they are
        assert Collate(tok.to_dict(), max_len=len(ids), transpose=3)._shift(ids) is ids
        return
    pitches = [n.pitch for n in tok.decode(ids.tolist())[0].notes]
    assert span == (min(pitches), max(pitches))
    if 0 <= span[0] + shift and span[1] + shift <= 127:
        moved = tok.decode(tok.transpose(ids, shift).tolist())[0]
        assert [n.pitch for n in moved.notes] == [p + shift for p in pitches]
