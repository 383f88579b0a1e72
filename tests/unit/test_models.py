"""The three melody models on tiny configs: contract, loss masking, learning, caches, artifacts."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from musicgen import storage
from musicgen.models import MODELS, build_model, load_artifact, model_from_state, save_artifact, state_to_bytes
from musicgen.models.lstm import sync_gradients

V, S, B, T = 30, 3, 4, 12
FIRST_STYLE = V - S
TINY = {
    "lstm": dict(embed_dim=16, hidden_size=32, num_layers=2, dropout=0.0, style_dim=4),
    "transformer": dict(n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0),
    "gan": dict(embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0, style_dim=4, d_embed_dim=8,
                d_channels=8, gen_len=10, adversarial_after_steps=3, style_token_offset=FIRST_STYLE),
}


def tiny(name: str, **overrides):
    torch.manual_seed(0)
    return build_model(name, vocab_size=V, n_styles=S, **{**TINY[name], **overrides})


def make_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``<bos> STYLE body <eos> <pad>...`` rows of different lengths, like the tokenizers produce."""
    g = torch.Generator().manual_seed(seed)
    style = torch.randint(0, S, (B,), generator=g)
    tokens = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate([T - 3, 7, 5, T - 4][:B]):
        body = torch.randint(3, FIRST_STYLE, (n,), generator=g)
        tokens[i, : n + 3] = torch.cat([torch.tensor([1, FIRST_STYLE + int(style[i])]), body, torch.tensor([2])])
    return tokens, style


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_and_step(name):
    model = tiny(name).eval()
    tokens, style = make_batch()
    logits, loss = model(tokens[:, :-1], style, tokens[:, 1:])
    assert logits.shape == (B, T - 1, V) and loss.shape == () and torch.isfinite(loss)
    assert model(tokens, style)[1] is None
    last, cache = model.step(tokens[:, :3], style)
    assert last.shape == (B, V)


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_ignores_padding(name):
    model = tiny(name).eval()
    tokens, style = make_batch()
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits, loss = model(inputs, style, targets)
    keep = targets != 0
    manual = F.cross_entropy(logits[keep], targets[keep])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    # Inputs whose targets are padding only influence ignored (causally later) predictions.
    changed = inputs.clone()
    changed[~keep] = 7
    assert not torch.equal(changed, inputs)
    assert model(changed, style, targets)[1].item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("name,lr", [("lstm", 2e-2), ("transformer", 3e-3)])
def test_training_step_overfits_one_batch(name, lr):
    model = tiny(name)
    tokens, style = make_batch()
    optimizers = model.configure_optimizers(lr=lr, weight_decay=0.0)
    losses = [model.training_step(tokens, style, optimizers, step)["loss"] for step in range(80)]
    assert losses[-1] < 0.3 * losses[0], losses[::10]


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_step_with_cache_matches_full_forward(name):
    model = tiny(name, dropout=0.1).eval()  # eval must switch dropout off in both paths
    tokens, style = make_batch()
    with torch.no_grad():
        full, _ = model(tokens, style)
        last, cache = model.step(tokens[:, :3], style)  # a prompt, then one token at a time
        stepped = [last]
        for t in range(3, T - 4):
            last, cache = model.step(tokens[:, t : t + 1], style, cache)
            stepped.append(last)
        last, cache = model.step(tokens[:, T - 4 :], style, cache)  # several new tokens after a cache
    torch.testing.assert_close(torch.stack(stepped, 1), full[:, 2 : T - 4], atol=1e-5, rtol=0)
    torch.testing.assert_close(last, full[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, precision", [(name, None) for name in MODELS]
                         + [(name, p) for name in ("lstm", "gan") for p in ("fp32", "bf16", "int8")])
def test_select_rows_continues_only_those_rows(name, precision):
    model = tiny(name).eval()
    if precision:
        model.prepare_sampling(precision)
    tokens, style = make_batch()
    rows = torch.tensor([3, 1])
    with torch.inference_mode():
        _, cache = model.step(tokens[:, :5], style)
        last, _ = model.step(tokens[rows, 5:6], style[rows], model.select_rows(cache, rows))
        alone, _ = model.step(tokens[rows, :6], style[rows])
    torch.testing.assert_close(last, alone, atol=1e-2 if precision == "bf16" else 1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "gan"])
def test_sampling_cells_follow_the_module_and_int8_never_depends_on_other_rows(name):
    model = tiny(name, num_layers=2).eval()
    tokens, style = make_batch()

    def run(rows):
        with torch.inference_mode():
            last, cache = model.step(tokens[rows, :3], style[rows])
            out = []
            for t in range(3, T - 1):
                last, cache = model.step(tokens[rows, t : t + 1], style[rows], cache)
                out.append(last)
        return torch.stack(out, 1)

    module = run(torch.arange(B))
    for precision in ("fp32", "bf16", "int8"):
        model.prepare_sampling(precision)
        cell = run(torch.arange(B))
        if precision == "fp32":
            torch.testing.assert_close(cell, module, atol=1e-5, rtol=0)
        else:
            assert not torch.equal(cell, module), f"the {precision} path ran"
            torch.testing.assert_close(cell.softmax(-1), module.softmax(-1), atol=0.02, rtol=0)
    for rows in (torch.tensor([2]), torch.tensor([3, 0])):  # int8 alone or in another batch: bit for bit the same
        assert torch.equal(run(rows), cell[rows])


def test_transformer_refuses_positions_beyond_block_size():
    model = tiny("transformer").eval()
    tokens, style = make_batch()
    with torch.no_grad():
        _, cache = model.step(tokens, style)
        _, cache = model.step(tokens[:, :4], style, cache)  # exactly block_size = 16
        with pytest.raises(ValueError, match="block_size"):
            model.step(tokens[:, :1], style, cache)
        with pytest.raises(ValueError, match="block_size"):
            model(torch.ones(1, 17, dtype=torch.long), style[:1])


@pytest.mark.parametrize("feed", ["straight_through", "hard", "soft"])
def test_gumbel_rollout_rows_are_distributions(feed):
    gan = tiny("gan", rollout_feed=feed)
    style = torch.tensor([0, 1, 2])
    rows = gan.gumbel_rollout(style, 6, temperature=0.5)
    assert rows.shape == (3, 6, V)
    torch.testing.assert_close(rows.sum(-1), torch.ones(3, 6))
    assert rows[..., 0].max() <= 1.0 and rows[..., 1].max() == 0 and rows[..., FIRST_STYLE:].max() == 0
    if feed != "hard":  # gradient reaches the generator through the relaxed samples
        rows[..., 5].sum().backward()
        assert gan.generator.tok_emb.weight.grad.abs().sum() > 0


def test_gan_adversarial_step_updates_generator_and_discriminator():
    gan = tiny("gan")
    tokens, style = make_batch()
    optimizers = gan.configure_optimizers(lr=1e-3, weight_decay=0.01)
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    for step in range(3):  # MLE warm start leaves the discriminator alone
        stats = gan.training_step(tokens, style, optimizers, step)
        assert set(stats) == {"loss"}
    assert all(torch.equal(a, b) for a, b in zip(d_before, gan.discriminator.parameters()))
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    stats = gan.training_step(tokens, style, optimizers, 3)
    assert {"loss", "d_loss", "g_loss"} <= set(stats)
    assert all(math.isfinite(stats[k]) for k in ("loss", "d_loss", "g_loss"))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, gan.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, gan.generator.parameters()))
    assert all(p.requires_grad for p in gan.parameters())
    assert gan.temperature_at(0) == 1.0 and gan.temperature_at(10**9) == pytest.approx(0.3)


@pytest.mark.parametrize("name", list(MODELS))
def test_artifact_round_trip(name, tmp_path):
    model = tiny(name)
    tokens, style = make_batch()
    optimizers = model.configure_optimizers(1e-3, 0.0)
    model.training_step(tokens, style, optimizers, 0)  # weights differ from a fresh init
    fields = {"training": {"val_bits_per_token": {"all": 1.5}}, "train_config": {"name": "run"}, "step": 3, "epoch": 1}
    uri = str(tmp_path / "artifact")
    save_artifact(uri, model, name, **fields)
    loaded, meta = load_artifact(uri)
    assert type(loaded) is type(model) and not loaded.training
    assert meta.model == name and meta.torch_version == torch.__version__
    assert {k: getattr(meta, k) for k in fields} == fields and meta.run_name == "run"
    assert loaded.config == model.config
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, style)[0], model(tokens, style)[0], atol=0, rtol=0)
    again = model_from_state(name, meta.config, state_to_bytes(model))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


class NotATensor:
    pass


def test_load_artifact_refuses_pickled_objects(tmp_path):
    uri = str(tmp_path / "artifact")
    save_artifact(uri, tiny("lstm"), "lstm")
    buffer = io.BytesIO()
    torch.save({"x": NotATensor()}, buffer)
    storage.write_bytes(storage.join(uri, "weights.pt"), buffer.getvalue())
    with pytest.raises(ValueError, match="refusing"):
        load_artifact(uri)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("wavenet", vocab_size=V, n_styles=S)
    with pytest.raises(ValueError, match="hidden"):
        build_model("lstm", vocab_size=V, n_styles=S, hiden_size=3)
    with pytest.raises(TypeError):
        save_artifact("unused", tiny("lstm"), "transformer")


def test_gradients_are_averaged_across_workers(monkeypatch):
    """With a process group of two, the flat all-reduce averages (here: with a worker whose grads are 0)."""
    model = tiny("lstm")
    tokens, style = make_batch()
    model.mle_loss(tokens, style).backward()
    before = [p.grad.clone() for p in model.parameters()]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, *a, **k: t)  # the other worker adds 0
    sync_gradients(model)
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.grad, b / 2)


def test_distinct_ngram_ratio_sees_collapse():
    from musicgen.models.gan import distinct_ngram_ratio

    varied = torch.arange(3, 43).reshape(2, 20)
    collapsed = torch.tensor([[5, 6] * 10, [5, 6] * 10])
    assert distinct_ngram_ratio(varied, 4) == 1.0
    assert distinct_ngram_ratio(collapsed, 4) == pytest.approx(2 / 34)
    assert distinct_ngram_ratio(torch.zeros(2, 5, dtype=torch.long), 4) == 0.0


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_style_dropout_trains_a_no_style_row_too(name):
    model = tiny(name, style_dropout=0.5)
    table = model.style_emb if name == "lstm" else model.wse
    assert table.num_embeddings == S + 1, "one extra row: no style"
    tokens, style = make_batch()
    tokens, style = tokens.repeat(16, 1), style.repeat(16)  # 64 rows: both kinds are drawn
    model.train()
    model.mle_loss(tokens, style).backward()
    grads = table.weight.grad.abs().sum(1)
    assert grads[S] > 0, "dropped rows train the no-style embedding"
    assert (grads[style.unique()] > 0).all(), "the other rows train their own style"
    model.zero_grad()
    model.eval()  # no dropout outside training
    model.mle_loss(tokens, style).backward()
    assert table.weight.grad[S].abs().sum() == 0


def test_fine_tuning_copies_weights_and_grows_the_style_table():
    from musicgen.models import copy_weights_for_finetuning

    trained = tiny("lstm")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # anything but the fresh initialisation
    model = tiny("lstm", style_dropout=0.1)
    copy_weights_for_finetuning(model, trained)
    for (name, new), old in zip(model.state_dict().items(), trained.state_dict().values()):
        if name == "style_emb.weight":
            assert torch.equal(new[:S], old) and torch.allclose(new[S], old.mean(0))
        else:
            assert torch.equal(new, old), name
    with pytest.raises(ValueError, match="cannot fine-tune"):
        copy_weights_for_finetuning(tiny("lstm", hidden_size=16), trained)


def test_a_gan_generator_starts_from_a_trained_lstm():
    from musicgen.models import copy_weights_for_finetuning

    lstm = tiny("lstm", num_layers=1, style_dropout=0.1)
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(1.0)
    gan = tiny("gan", style_dropout=0.1)
    discriminator = {k: v.clone() for k, v in gan.discriminator.state_dict().items()}
    copy_weights_for_finetuning(gan, lstm)
    for (name, new), old in zip(gan.generator.state_dict().items(), lstm.state_dict().values()):
        assert torch.equal(new, old), name
    assert all(torch.equal(v, discriminator[k]) for k, v in gan.discriminator.state_dict().items())
    assert gan.generator.style_emb.num_embeddings == S + 1, "the generator keeps the no-style row (guidable)"
