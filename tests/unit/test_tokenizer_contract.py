"""The contract every registered tokenizer keeps (MidiTok-style): a new tokenizer in ``TOKENIZERS``
is tested here without a line of its own. It owns its token layout: the round trip, the prompt,
the sampling grammar, the scored targets, and what the data and copy-check code ask of its ids."""

import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.data.collate import Collate, windows
from musicgen.music.keys import key_name, parse_key
from musicgen.music.midi import read_midi, write_midi
from musicgen.tokenizers import TOKENIZERS, make_tokenizer
from musicgen.tokenizers.base import STYLE_POSITION, scored_positions
from musicgen.tokenizers.keyed import tonic_shift
from musicgen.tokenizers.targets import PAD_ID, hide_style, inputs_and_targets
from tests.conftest import melodies

STYLES = ("folk", "chorale")
NAMES = sorted(TOKENIZERS)


KEYS = [key_name(pc, mode) for pc in range(12) for mode in ("major", "minor")]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None)
@given(melody=melodies(), key=st.sampled_from(KEYS))
def test_exact_round_trip_of_any_melody(name, melody, key):
    tok = make_tokenizer(name, STYLES)
    melody = replace(melody, key=key)  # a tokenizer may write a melody relative to its key
    if name == "keyed" and not all(0 <= n.pitch - tonic_shift(parse_key(key)[0]) <= 127 for n in melody.notes):
        with pytest.raises(ValueError, match="MIDI range"):
            tok.encode(melody, "chorale")
        return
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


def test_keyed_writes_the_body_in_c_after_the_melodys_own_key():
    from musicgen.music.melody import Melody, Note

    tok = make_tokenizer("keyed", STYLES)
    in_a = Melody((Note(69, 0, 12), Note(71, 12, 12), Note(73, 24, 24)), (3, 4), "A major")
    in_c = replace(in_a, notes=tuple(n._replace(pitch=n.pitch + 3) for n in in_a.notes), key="C major")
    a_ids, c_ids = tok.encode(in_a, "folk"), tok.encode(in_c, "folk")
    assert [tok.vocab[i] for i in a_ids[:5]] == ["<bos>", "STYLE_folk", "TS_3/4", "KEY_A_major", "BAR"]
    assert a_ids[4:] == c_ids[4:]  # A major is written three semitones up, as C major
    assert tok.decode(a_ids)[0] == in_a
    # a requested key is forced through the grammar: its KEY token is the only one allowed
    grammar = tok.grammar()
    state = grammar.start([2], [(3, 4)], [0], ["F# minor"])
    grammar.advance(state, np.array([tok.index["TS_3/4"]]))
    assert np.flatnonzero(grammar.allowed(state)[0]).tolist() == [tok.index["KEY_F#_minor"]]
    free = grammar.start([2], [(3, 4)], [0], [None])
    grammar.advance(free, np.array([tok.index["TS_3/4"]]))
    assert np.flatnonzero(grammar.allowed(free)[0]).tolist() == tok.key_tokens().tolist()


@pytest.mark.parametrize("name", NAMES)
def test_a_model_of_every_tokenizer_samples_melodies_in_the_requested_key_and_length(tmp_path, name):
    from musicgen.music.keys import parse_key as parse
    from musicgen.sampling import MelodyGenerator, SampleRequest
    from tests.conftest import save_tiny_artifact

    generator = MelodyGenerator.from_artifact(save_tiny_artifact(str(tmp_path / "m"), tokenizer=name),
                                              device="cpu", precision="fp32")
    style = generator.styles[0]
    requests = [SampleRequest(style, seed, bars=4, time_signature=(4, 4), key="Bb minor") for seed in range(4)]
    for made in generator.generate(requests):
        tok = generator.tokenizer
        assert made.tokens[0] == tok.bos_id and made.tokens[STYLE_POSITION] == tok.style_token(style)
        assert parse(made.melody.key) == parse("Bb minor")
        if name != "abc":  # the events grammars fill exactly the bars asked for
            assert made.melody.end == 4 * made.melody.bar_ticks
