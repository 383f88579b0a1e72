"""One scoring rule: the training loss, validation and the n-gram baseline score the same tokens."""

import random

import numpy as np
import pytest
import torch

from musicgen.data.collate import Collate, windows
from musicgen.models import build_model
from musicgen.tokenizers import EventTokenizer
from musicgen.tokenizers.base import scored_positions
from musicgen.tokenizers.targets import hide_style, inputs_and_targets
from musicgen.training.loop import evaluate
from musicgen.training.ngram import StyleNgramBaseline
from tests.conftest import random_melody

STYLES = ("a", "b")


@pytest.fixture(scope="module")
def sequences():
    rng = random.Random(3)
    tokenizer = EventTokenizer(STYLES)
    out = [tokenizer.encode(random_melody(rng, n_notes=rng.randint(8, 60)), STYLES[i % 2]) for i in range(12)]
    return tokenizer, out, [STYLES[i % 2] for i in range(12)]


@pytest.mark.parametrize("length", [1, 2, 3, 10, 33, 34, 35, 100])
def test_windows_score_every_token_after_the_first_once(length):
    sequence = list(range(100, 100 + length))
    cut = windows(sequence, max_len=16)
    assert all(len(w) <= 17 for w in cut)
    predicted = [t for w in cut for t in w[1:]]
    assert predicted == sequence[1:]  # each once, in order
    assert cut[0][0] == sequence[0]


def test_the_batched_rule_is_the_sequence_rule(sequences):
    tokenizer, seqs, styles = sequences
    cut = [w for s in seqs for w in windows(s, 16)]  # starts of melodies and windows from inside them
    batch = Collate(tokenizer.to_dict(), max_len=16).collate(cut, ["a"] * len(cut))["tokens"]
    _, targets = inputs_and_targets(batch)
    for row, window in zip(targets.tolist(), cut):
        assert [i + 1 for i, t in enumerate(row) if t != 0] == list(scored_positions(window))
    assert any(w[0] == tokenizer.bos_id for w in cut) and any(w[0] != tokenizer.bos_id for w in cut)


def test_training_loss_validation_and_ngram_score_the_same_tokens(sequences):
    tokenizer, seqs, styles = sequences
    torch.manual_seed(0)
    model = build_model("lstm", vocab_size=len(tokenizer), n_styles=2, embed_dim=16, hidden_size=16, num_layers=1,
                        dropout=0.0, style_dropout=0.2).eval()
    rows = [(w, s) for seq, s in zip(seqs, styles) for w in windows(seq, 16)]
    collate = Collate(tokenizer.to_dict(), max_len=16)
    batch = collate.collate([w for w, _ in rows], [s for _, s in rows])
    metrics = evaluate(model, [batch], STYLES)
    with torch.no_grad():
        training_loss = model.mle_loss(batch["tokens"], batch["style"])  # eval mode: no style dropout
    assert float(training_loss) == pytest.approx(metrics["val_loss"], rel=1e-5)

    ngram = StyleNgramBaseline(3, len(tokenizer)).fit(seqs, styles)
    scored = sum(ngram.nll_bits(w, s)[1] for w, s in rows)
    _, targets = inputs_and_targets(batch["tokens"])
    assert scored == int((targets != 0).sum()) == sum(len(s) - 2 for s in seqs)


def test_style_dropout_hides_only_the_style_token_of_melody_starts(sequences):
    tokenizer, seqs, _ = sequences
    start, middle = seqs[0][:10], seqs[0][10:20]
    tokens = torch.tensor([start, middle])
    hidden = hide_style(tokens, torch.tensor([True, True]))
    assert hidden[0, 1] == 0 and hidden[0].tolist()[2:] == start[2:]
    assert hidden[1].tolist() == middle  # position 1 of a window from inside a melody is a note: untouched
    kept = hide_style(tokens, torch.tensor([False, False]))
    assert kept.tolist() == tokens.tolist()
    assert np.array_equal(tokens.numpy(), np.array([start, middle]))  # the input is not changed in place
