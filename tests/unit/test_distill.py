"""Guidance distillation: the student's loss, what it learns, and how the sampler and evaluation read it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from musicgen.config import TrainConfig
from musicgen.models import build_model
from musicgen.models.distill import baked_guidance, distillation_loss, guided_targets, plain_logits
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.tokenizers.targets import PAD_ID, inputs_and_targets
from tests.conftest import STYLES, save_tiny_artifact

V, S = 24, 3
LSTM = dict(vocab_size=V, n_styles=S, embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0, style_dim=8,
            style_dropout=0.25)


def corpus(n: int = 32, length: int = 14, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``<bos> STYLE body <eos>`` rows whose bodies depend on the style, so guidance has something to sharpen."""
    g = torch.Generator().manual_seed(seed)
    style = torch.randint(0, S, (n,), generator=g)
    body = (torch.randint(0, 4, (n, length - 3), generator=g) + 3 + 5 * style[:, None]) % (V - S - 3) + 3
    tokens = torch.cat([torch.full((n, 1), 1), (V - S + style)[:, None], body, torch.full((n, 1), 2)], dim=1)
    return tokens, style


def kl(target: torch.Tensor, logits: torch.Tensor, scored: torch.Tensor) -> float:
    per = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(target, -1), log_target=True, reduction="none").sum(-1)
    return float((per * scored).sum() / scored.sum())


def trained_teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    teacher = build_model("lstm", **LSTM)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    tokens, style = corpus()
    for _ in range(60):
        optimizer.zero_grad()
        teacher.train()
        teacher.mle_loss(tokens, style).backward()
        optimizer.step()
    return teacher.eval()


def test_the_student_learns_its_teachers_guided_distribution_and_keeps_its_plain_one():
    teacher = trained_teacher()
    student = build_model("lstm", **LSTM, baked_guidance=2.0)
    student.load_state_dict(teacher.state_dict())
    tokens, style = corpus(seed=1)
    guided, _ = guided_targets(teacher, tokens, style, 2.0)
    inputs, targets = inputs_and_targets(tokens)
    scored = targets != PAD_ID
    plain_teacher, _ = teacher(inputs, style)

    def gaps() -> tuple[float, float]:
        student.eval()
        with torch.no_grad():
            styled, _ = student(inputs, style)
            return kl(guided, styled, scored), kl(plain_teacher, plain_logits(student, inputs, style), scored)

    before_guided, before_plain = gaps()
    assert before_guided > 0.01, "the teacher's own styled branch is not its guided distribution"
    optimizer = torch.optim.Adam(student.parameters(), lr=5e-3)
    train_tokens, train_style = corpus(n=64, seed=2)
    for _ in range(150):
        optimizer.zero_grad()
        student.train()
        distillation_loss(student, teacher, train_tokens, train_style).backward()
        optimizer.step()
    after_guided, after_plain = gaps()
    assert after_guided < before_guided / 4, "one pass of the student samples what two of the teacher did"
    assert after_plain < before_plain / 2, "and at guidance 1 its two branches give back the teacher's plain model"


def test_the_loss_scores_what_the_mle_loss_scores():
    """A student equal to its target scores zero on every position the MLE loss scores, whichever rows drop."""
    teacher = trained_teacher()
    student = build_model("lstm", **{**LSTM, "style_dropout": 0.0}, baked_guidance=1.5)
    with pytest.raises(ValueError, match="style dropout"):
        distillation_loss(student, teacher, *corpus())
    twin = build_model("lstm", **LSTM)  # baked 1: its target is the teacher's plain styled branch
    twin.load_state_dict(teacher.state_dict())
    twin.eval()
    assert distillation_loss(twin, teacher, *corpus()).item() == pytest.approx(0.0, abs=1e-6)


def test_a_distilled_model_samples_at_its_weight_in_one_pass_and_at_any_other_from_both_branches(tmp_path):
    """Same weights: the distilled model at guidance w is its styled branch alone (the undistilled twin at
    guidance 1); at w' it mixes its branches by w'/w. Its default is w, one model row a melody."""
    twin = MelodyGenerator.from_artifact(save_tiny_artifact(str(tmp_path / "twin"), style_dropout=0.1))
    student = MelodyGenerator.from_artifact(save_tiny_artifact(str(tmp_path / "student"), style_dropout=0.1,
                                                               baked_guidance=2.0))
    assert baked_guidance(student.model.config) == 2.0 and baked_guidance(twin.model.config) == 1.0
    rows = []
    step = student.model.step
    student.model.step = lambda tokens, style, cache=None: rows.append(tokens.size(0)) or step(tokens, style, cache)
    default = student.generate([SampleRequest(style=STYLES[1], seed=5, bars=4)])[0]
    assert default.request.guidance == 2.0 and set(rows) == {1}, "one pass, no unstyled twin row"
    assert default.tokens == twin.generate([SampleRequest(style=STYLES[1], seed=5, bars=4, guidance=1.0)])[0].tokens
    rows.clear()
    other = student.generate([SampleRequest(style=STYLES[1], seed=5, bars=4, guidance=3.0)])[0]
    assert set(rows) == {2}, "another weight runs both branches"
    assert other.tokens == twin.generate([SampleRequest(style=STYLES[1], seed=5, bars=4, guidance=1.5)])[0].tokens


def test_distillation_needs_a_teacher_and_a_weight_above_one():
    with pytest.raises(ValueError, match="init-from"):
        TrainConfig(data="d", name="n", storage="s", max_steps=1, distill_guidance=2.0)
    with pytest.raises(ValueError, match="W > 1"):
        TrainConfig(data="d", name="n", storage="s", max_steps=1, init_from="pretrained", distill_guidance=1.0)
    assert TrainConfig(data="d", name="n", storage="s", max_steps=1, init_from="pretrained",
                       distill_guidance=2.0).distill_guidance == 2.0


def test_fine_tuning_a_distilled_model_learns_a_plain_one_and_a_gan_may_start_from_it():
    """The next-token loss learns the plain conditional model, so a run from a distilled model (the shipped
    one) without --distill-guidance must not keep its weight: sampled at 2 it would be guided at 1."""
    from musicgen.models.registry import check_model_config
    from musicgen.tokenizers import make_tokenizer
    from musicgen.training.worker import model_kwargs

    tok = make_tokenizer("keyed", STYLES)
    start = {**LSTM, "vocab_size": len(tok), "n_styles": len(STYLES), "baked_guidance": 2.0}
    config = TrainConfig(data="d", name="n", storage="s", max_steps=1, init_from="pretrained")
    assert "baked_guidance" not in model_kwargs(config, tok, start)
    distilled = TrainConfig(data="d", name="n", storage="s", max_steps=1, init_from="pretrained", distill_guidance=3.0)
    assert model_kwargs(distilled, tok, start)["baked_guidance"] == 3.0
    gan = TrainConfig(data="d", name="n", storage="s", max_steps=1, model="gan", init_from="pretrained")
    assert check_model_config("gan", model_kwargs(gan, tok, start)).n_styles == len(STYLES)
