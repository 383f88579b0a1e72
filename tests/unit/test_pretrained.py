"""The model that ships in the package: found without --model, safe to load, intact, and it writes
grammar-valid melodies in every style it knows."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from musicgen.cli import main
from musicgen.models import load_artifact
from musicgen.pretrained import CHECKSUMS, pretrained_path, resolve_model, verify_checksums
from musicgen.sampling import MelodyGenerator, SampleRequest

STYLES = ("bach_chorale", "chinese_folk", "german_folk", "irish_folk", "renaissance")


@pytest.fixture(scope="module")
def shipped():
    return MelodyGenerator.from_artifact("pretrained", device="cpu")


def test_the_shipped_model_is_small_intact_and_named_pretrained():
    folder = pretrained_path()
    assert resolve_model(None) == resolve_model("pretrained") == str(folder)
    assert (folder / "weights.pt").stat().st_size <= 10 * 2**20
    assert (folder / "MODEL_CARD.md").read_text().startswith("# ")
    listed = {line.split(maxsplit=1)[1] for line in (folder / CHECKSUMS).read_text().splitlines()}
    assert {"weights.pt", "model.json", "reference/vocab.json"} <= listed


def test_a_damaged_copy_is_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(pretrained_path(), copy)
    verify_checksums(copy)
    data = bytearray((copy / "weights.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        verify_checksums(copy)


def test_it_loads_with_weights_only_and_knows_the_five_styles(shipped):
    _, meta = load_artifact("pretrained")  # torch.load(weights_only=True): tensors only, never code
    assert shipped.styles == STYLES and shipped.guidable
    training = meta.training
    for style in ("all", *STYLES):  # beats the 5-gram overall and on every style, the same tokens scored
        assert training["val_bits_per_token"][style] < training["ngram_bits_per_token"][style], style


@pytest.mark.parametrize("style", STYLES)
def test_every_style_gets_grammar_valid_melodies(shipped, style):
    grammar = shipped.tokenizer.grammar()
    for out in shipped.generate([SampleRequest(style=style, seed=seed, bars=8) for seed in range(3)]):
        state = grammar.start([8], [None])
        for token in out.tokens[2:]:
            assert grammar.allowed(state)[0, token], f"token {shipped.tokenizer.vocab[token]} breaks the grammar"
            grammar.advance(state, np.array([token]))
        assert out.melody.n_bars == 8 and out.melody.end == 8 * out.melody.bar_ticks


def test_generate_needs_no_model_flag(tmp_path, capsys):
    assert main(["generate", "--style", "irish_folk", "--n", "4", "--out", str(tmp_path), "--format", "mid,abc"]) == 0
    assert len(list(tmp_path.glob("irish_folk-*.mid"))) == 4 and len(list(tmp_path.glob("*.abc"))) == 4
    assert "8 files written" in capsys.readouterr().out
