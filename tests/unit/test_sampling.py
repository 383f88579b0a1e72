"""The sampler: grammar-valid output, per-row seeds, filters, primers, keys, every model kind."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgen.music.melody import TICKS_PER_BEAT, Melody, Note, bar_ticks, estimate_key, transpose_to_key
from musicgen.music.performance import performance_for
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.sampling.sampler import DEFAULT_GUIDANCE, pick_tokens, uniforms
from musicgen.tokenizers import EventTokenizer
from musicgen.tokenizers.grammar import GRID, EventGrammar
from tests.conftest import STYLES, random_melody, save_tiny_artifact


@pytest.fixture(scope="module")
def generator(tiny_artifact) -> MelodyGenerator:
    return MelodyGenerator.from_artifact(tiny_artifact, device="cpu")


def _check_events_melody(melody: Melody, bars: int, time_signature=None) -> None:
    """What the events grammar promises: exact length, on-grid onsets, monophonic, ends on a note."""
    if time_signature:
        assert melody.time_signature == time_signature
    bar = bar_ticks(melody.time_signature)
    assert melody.notes, "a melody has at least one note"
    assert melody.end == bars * bar, "the melody fills exactly the requested bars and ends on a note"
    assert melody.n_bars == bars
    for a, b in zip(melody.notes, melody.notes[1:]):
        assert a.onset + a.duration <= b.onset
    assert all(n.onset % TICKS_PER_BEAT in GRID for n in melody.notes)
    assert all(21 <= n.pitch <= 108 for n in melody.notes)


@pytest.mark.parametrize("time_signature", [(4, 4), (6, 8), (3, 4), None])
def test_untrained_model_still_writes_valid_melodies_of_exact_length(generator, time_signature):
    # an untrained model's logits are near uniform: the grammar alone keeps the output valid
    requests = [SampleRequest(style=STYLES[i % 5], seed=i, bars=1 + i % 6, temperature=1.5,
                              time_signature=time_signature) for i in range(24)]
    for out in generator.generate(requests):
        _check_events_melody(out.melody, out.request.bars, time_signature)
        assert out.tokens[0] == generator.tokenizer.bos_id and out.tokens[-1] == generator.tokenizer.eos_id
        assert out.tokens[1] == generator.tokenizer.style_token(out.request.style)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_same_seed_same_melody_whatever_the_batch(tiny_artifact, precision):
    generator = MelodyGenerator.from_artifact(tiny_artifact, device="cpu", precision=precision)
    assert generator.precision == precision
    alone = generator.generate([SampleRequest(style="irish_folk", seed=42, bars=4)])[0]
    again = generator.generate([SampleRequest(style="irish_folk", seed=42, bars=4)])[0]
    batch = generator.generate([SampleRequest(style="german_folk", seed=s, bars=2 + s % 3, temperature=0.7)
                                for s in range(7)] + [SampleRequest(style="irish_folk", seed=42, bars=4)])
    assert alone.tokens == again.tokens == batch[-1].tokens
    others = generator.generate([SampleRequest(style="irish_folk", seed=s, bars=4) for s in (1, 2, 3)])
    assert len({tuple(o.tokens) for o in others + [alone]}) == 4, "different seeds give different melodies"


def test_greedy_ignores_the_seed_and_top_k_1_is_greedy(generator):
    greedy = [generator.generate([SampleRequest(style="bach_chorale", seed=s, bars=3, temperature=0)])[0].tokens
              for s in (0, 1)]
    top1 = generator.generate([SampleRequest(style="bach_chorale", seed=9, bars=3, top_k=1)])[0].tokens
    assert greedy[0] == greedy[1] == top1


def test_uniforms_are_splitmix64_streams():
    def splitmix64(seed, n):  # the reference generator (Steele, Lea & Flood 2014), in Python integers
        out, state = [], seed
        for _ in range(n):
            state = (state + 0x9E3779B97F4A7C15) % 2**64
            z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
            out.append((z ^ (z >> 31)) >> 11)
        return [x * 2.0**-53 for x in out]

    seeds = np.array([0, 7, 2**40 + 3, 2**64 - 1], dtype=np.uint64)
    assert uniforms(seeds, 0, 6).tolist() == [splitmix64(int(s), 6) for s in seeds]
    assert uniforms(seeds, 2, 4).tolist() == [splitmix64(int(s), 6)[2:] for s in seeds]  # a later block goes on
    many = uniforms(np.arange(500, dtype=np.uint64), 0, 40)
    assert 0 <= many.min() and many.max() < 1 and abs(many.mean() - 0.5) < 0.01


def test_pick_tokens_follows_the_filtered_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32)).repeat(4000, axis=0)
    allowed = np.ones_like(logits, dtype=bool)
    u = np.random.default_rng(0).random(4000)
    one, zero = np.ones(4000), np.zeros(4000, dtype=np.int64)

    def freq(tokens):
        return np.bincount(tokens, minlength=4) / len(tokens)

    plain = freq(pick_tokens(logits, allowed, one, zero, one, u, filtered=False))
    np.testing.assert_allclose(plain, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    np.testing.assert_allclose(freq(pick_tokens(logits, allowed, one, zero, one, u)), [0.5, 0.3, 0.15, 0.05], atol=0.03)
    top_p = freq(pick_tokens(logits, allowed, one, zero, np.full(4000, 0.75), u))  # keeps 0.5 + 0.3
    np.testing.assert_allclose(top_p, [0.625, 0.375, 0, 0], atol=0.03)
    top_k = freq(pick_tokens(logits, allowed, one, np.full(4000, 3), one, u))
    np.testing.assert_allclose(top_k, [0.526, 0.316, 0.158, 0], atol=0.03)
    masked = freq(pick_tokens(logits, allowed & np.array([False, True, True, True]), one, zero, one, u))
    assert masked[0] == 0
    cold = freq(pick_tokens(logits, allowed, np.full(4000, 0.1), zero, one, u))
    assert cold[0] > 0.99
    greedy = pick_tokens(logits[:, ::-1].copy(), allowed, np.zeros(4000), zero, one, u)
    assert (greedy == 3).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 8), st.sampled_from([(4, 4), (6, 8), (5, 4), (2, 2), None]))
def test_events_grammar_never_dead_ends(seed, bars, time_signature):
    """Any path through the mask ends with <eos> after exactly ``bars`` bars, within the length bound."""
    tok = EventTokenizer(STYLES)
    grammar = EventGrammar(tok)
    state = grammar.start([bars], [time_signature])
    rng = random.Random(seed)
    sequence = []
    for _ in range(grammar.max_new_tokens([bars], [time_signature])):
        allowed = np.flatnonzero(grammar.allowed(state)[0]).tolist()
        assert allowed, "some token is always allowed"
        token = rng.choice(allowed)
        grammar.advance(state, np.array([token]))
        sequence.append(token)
        if bool(state.done[0]):
            break
    assert sequence[-1] == tok.eos_id
    melody, _ = tok.decode(sequence)
    _check_events_melody(melody, bars, time_signature)


def test_remembered_single_row_masks_match_the_batch_computation():
    """A batch of one reuses masks by state; each must equal that row's mask computed in a batch."""
    tok = EventTokenizer(STYLES)
    grammar = EventGrammar(tok)
    signatures = [(4, 4), (6, 8), None, (3, 4)] * 4
    batch = grammar.start([2] * 16, signatures)
    rows = [grammar.start([2], [ts]) for ts in signatures]
    rng = np.random.default_rng(0)
    for _ in range(grammar.max_new_tokens([2], signatures)):
        batched = grammar.allowed(batch)
        singles = [grammar.allowed(row) for row in rows]
        np.testing.assert_array_equal(np.concatenate(singles), batched)
        assert not singles[0].flags.writeable
        tokens = np.array([rng.choice(np.flatnonzero(m)) for m in batched])
        grammar.advance(batch, tokens)
        for row, token in zip(rows, tokens):
            grammar.advance(row, np.array([token]))
        if batch.done.all():
            break
    assert batch.done.all() and len(grammar._single_row_masks) > 50


def test_primer_is_continued(generator):
    primer = Melody(tuple(Note(60 + 2 * i, 6 * i, 6) for i in range(6)), (4, 4), "C major", 90.0)
    out = generator.generate([SampleRequest(style="irish_folk", seed=3, bars=4, primer=primer)])[0].melody
    assert out.notes[:5] == primer.notes[:5]  # the last primer note may be extended
    assert out.notes[5].pitch == 70 and out.notes[5].onset == 30
    _check_events_melody(out, 4, (4, 4))
    with pytest.raises(ValueError, match="primer"):
        SampleRequest(style="irish_folk", seed=0, bars=1, primer=random_melody(random.Random(0), 40))


def test_requested_key_tempo_and_metadata(generator):
    out = generator.generate([SampleRequest(style="german_folk", seed=5, bars=8, key="D minor", tempo=132)])[0]
    assert out.melody.key == "D minor" and out.melody.tempo == 132.0
    assert out.melody.meta == {"style": "german_folk", "seed": 5, "bars": 8, "guidance": 1.0, "program": 21}
    # without a tempo or instrument, the style's own; a request may name another instrument
    own = generator.generate([SampleRequest(style="irish_folk", seed=5, bars=8, program=73)])[0].melody
    assert own.meta["program"] == 73
    assert own.tempo == performance_for("irish_folk").quarter_tempo(own.time_signature)
    with pytest.raises(KeyError, match="unknown style"):
        generator.generate([SampleRequest(style="polka", seed=0)])


def test_transpose_to_key_moves_a_scale_into_the_key():
    c_major = Melody(tuple(Note(p, 12 * i, 12) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])))
    d_major = transpose_to_key(c_major, "D major")
    assert [n.pitch for n in d_major.notes] == [62, 64, 66, 67, 69, 71, 73, 74] and d_major.key == "D major"
    assert estimate_key([n.pitch for n in d_major.notes], [12] * 8) == "D major"
    a_minor = transpose_to_key(c_major, "A minor")  # a major tune asked for a minor key lands on its relative
    assert a_minor.notes == c_major.notes and a_minor.key == "A minor"
    high = transpose_to_key(Melody(tuple(Note(p + 40, 12 * i, 12) for i, p in enumerate([60, 64, 67]))), "C major",
                            low=21, high=108)
    assert max(n.pitch for n in high.notes) <= 108


@pytest.mark.parametrize("model,tokenizer,config", [
    ("gan", "events", {}),
    ("transformer", "events", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24}),  # forces re-priming
    ("lstm", "abc", {}),
])
def test_every_model_kind_samples_through_the_same_interface(tmp_path, model, tokenizer, config):
    uri = save_tiny_artifact(str(tmp_path / model), model=model, tokenizer=tokenizer, **config)
    generator = MelodyGenerator.from_artifact(uri, device="cpu")
    outs = generator.generate([SampleRequest(style=s, seed=i, bars=4, time_signature=(3, 4))
                               for i, s in enumerate(STYLES[:3])])
    for out in outs:
        if tokenizer == "events":
            _check_events_melody(out.melody, 4, (3, 4))
        else:  # ABC: the text is parsed leniently; the meter prompt and the bar-line budget hold
            text = "".join(generator.tokenizer.vocab[t] for t in out.tokens[2:-1])
            assert text.startswith("M:3/4\nL:1/8\n") and text.endswith("|]")
            assert text.count("|") <= 4 and out.tokens[-1] == generator.tokenizer.eos_id
            assert out.melody.time_signature == (3, 4)
    again = generator.generate([SampleRequest(style=STYLES[0], seed=0, bars=4, time_signature=(3, 4))])
    assert again[0].tokens == outs[0].tokens


@pytest.fixture(scope="module")
def guided_artifact(tmp_path_factory) -> str:
    """A tiny LSTM trained-shape artifact with a "no style" row (style dropout), untrained."""
    return save_tiny_artifact(str(tmp_path_factory.mktemp("guided") / "model"), style_dropout=0.1)


def test_guided_logits_combine_the_styled_and_unstyled_runs(guided_artifact):
    from musicgen.models import load_artifact
    from musicgen.sampling.sampler import Stepper

    model, _ = load_artifact(guided_artifact)
    tok = MelodyGenerator.from_artifact(guided_artifact).tokenizer
    style = torch.tensor([0, 2, 4])
    prompt = torch.tensor([[tok.bos_id, tok.style_token(STYLES[s])] for s in style.tolist()])
    weight = torch.tensor([1.0, 2.0, 3.5])
    stepper = Stepper(model, style, weight, tok.pad_id)
    with torch.inference_mode():
        got = stepper(prompt)
        styled, _ = model.step(prompt, style)
        unstyled_prompt = prompt.clone()
        unstyled_prompt[:, 1] = tok.pad_id
        unstyled, _ = model.step(unstyled_prompt, torch.full_like(style, len(STYLES)))
    assert torch.equal(got[0], styled[0]), "guidance 1 is plain conditional sampling"
    expected = unstyled + weight[:, None] * (styled - unstyled)
    assert torch.allclose(got[1:], expected[1:], atol=1e-5)
    assert not torch.allclose(got[2], styled[2], atol=1e-3), "guidance moves the distribution"


@pytest.mark.parametrize("model,config", [
    ("lstm", {}),
    ("transformer", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24}),  # re-priming with twin rows
])
def test_guided_sampling_is_valid_and_reproducible_whatever_the_batch(tmp_path, model, config):
    uri = save_tiny_artifact(str(tmp_path / model), model=model, style_dropout=0.1, **config)
    generator = MelodyGenerator.from_artifact(uri)
    target = SampleRequest(style="irish_folk", seed=3, bars=4, guidance=3.0)
    alone = generator.generate([target])[0]
    # companions of other lengths finish at other times, so the batch is compacted around the target's twins
    batch = generator.generate([SampleRequest(style=STYLES[s % 5], seed=s, bars=1 + s % 3, guidance=1.5 + s % 2)
                                for s in range(9)] + [target])
    assert batch[-1].tokens == alone.tokens
    for out in batch:
        _check_events_melody(out.melody, out.request.bars)
    assert alone.melody.meta["guidance"] == 3.0
    default = generator.generate([SampleRequest(style="irish_folk", seed=3, bars=4)])[0]
    assert default.request.guidance == DEFAULT_GUIDANCE, "a guidable model is guided by default"
    plain = generator.generate([SampleRequest(style="irish_folk", seed=3, bars=4, guidance=1.0)])[0]
    assert plain.tokens != alone.tokens


def test_a_model_without_style_dropout_cannot_be_guided(generator):
    assert generator.generate([SampleRequest(style="irish_folk", seed=1, bars=2)])[0].request.guidance == 1.0
    with pytest.raises(ValueError, match="style dropout"):
        generator.generate([SampleRequest(style="irish_folk", seed=1, bars=2, guidance=2.0)])
    with pytest.raises(ValueError, match="guidance"):
        SampleRequest(style="irish_folk", seed=1, guidance=9.0)


@pytest.mark.parametrize("model,config", [
    ("lstm", {"style_dropout": 0.1}),
    ("transformer", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 24}),  # the window re-primes mid-prompt
])
def test_primers_of_different_lengths_and_each_row_is_as_if_alone(tmp_path, model, config, monkeypatch):
    """A longer prompt is read a token a step while the shorter ones already sample; each row still
    comes out token for token as when sampled alone, its primer kept, in one sampling loop."""
    import musicgen.sampling.sampler as sampler

    uri = save_tiny_artifact(str(tmp_path / model), model=model, **config)
    generator = MelodyGenerator.from_artifact(uri, device="cpu", precision="fp32")
    rng = random.Random(5)
    primers = [None, *(random_melody(rng, n, time_signature=(4, 4)) for n in (3, 9, 17))]
    requests = [SampleRequest(style=STYLES[i], seed=10 + i, bars=(p.n_bars if p else 0) + 2, primer=p)
                for i, p in enumerate(primers)]
    alone = [generator.generate([r])[0] for r in requests]
    calls = []
    original = sampler._sample_group
    monkeypatch.setattr(sampler, "_sample_group", lambda *a, **k: calls.append(len(a[2])) or original(*a, **k))
    together = generator.generate(requests)
    # a recurrent model reads every prompt in one loop; a windowed one groups prompts by length
    assert calls == ([len(requests)] if model == "lstm" else [1] * len(requests))
    for a, b, p in zip(alone, together, primers):
        assert a.tokens == b.tokens
        if p is not None:
            assert b.melody.notes[: len(p.notes) - 1] == p.notes[: len(p.notes) - 1]
        _check_events_melody(b.melody, b.request.bars, (4, 4) if p is not None else None)
