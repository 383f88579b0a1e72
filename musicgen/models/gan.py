"""Style-conditional GAN for discrete melody tokens, trained through a Gumbel-softmax relaxation.

Sampling tokens is not differentiable, so the generator's samples are relaxed
to Gumbel-softmax vectors (Jang, Gu & Poole, "Categorical Reparameterization
with Gumbel-Softmax", ICLR 2017; Kusner & Hernandez-Lobato, "GANs for
Sequences of Discrete Elements with the Gumbel-softmax Distribution", 2016)
and the discriminator reads those soft one-hot rows. The recipe follows
RelGAN (Nie, Narodytska & Patel, "RelGAN: Relational Generative Adversarial
Networks for Text Generation", ICLR 2019): a CNN discriminator over embedded
one-hots with several kernel widths, the relativistic standard loss (RSGAN,
Jolicoeur-Martineau 2018), an exponentially annealed temperature, and an MLE
warm start of the generator, as in SeqGAN (Yu et al., AAAI 2017). Unlike pure
RelGAN, the MLE term stays in the generator loss during adversarial training
(weighted by ``mle_weight``), because GANs on small corpora collapse to a few
modes without it. Style conditioning in the discriminator is a projection
term (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018).

The generator is a plain ``LSTMModel``, so sampling, ``step`` and validation
NLL are exactly those of the LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from musicgen.models.lstm import LSTMConfig, LSTMModel, adamw, backward_and_step
from musicgen.tokenizers.base import Tokenizer

ROLLOUT_FEEDS = ("straight_through", "hard", "soft")


@dataclass
class GANConfig:
    vocab_size: int
    n_styles: int
    # Id of the first STYLE token (Tokenizer.first_style_id); None: styles are the last ids.
    style_token_offset: int | None = None
    # generator (an LSTMModel)
    embed_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    style_dim: int = 32
    style_dropout: float = 0.0  # the generator's (> 0 enables guidance); see LSTMConfig
    # discriminator
    d_embed_dim: int = 64
    d_channels: int = 64
    d_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    d_dropout: float = 0.25
    # adversarial training
    gen_len: int = 128
    gumbel_temperature: float = 1.0
    gumbel_temperature_end: float = 0.3
    anneal_steps: int = 5000
    # Next-step input during the rollout: "straight_through" (the sampled token's embedding in
    # the forward pass, the soft sample's gradient backward), "hard" (RelGAN: no gradient through
    # time) or "soft" (the expected embedding under the relaxed sample).
    rollout_feed: str = "straight_through"
    mle_weight: float = 1.0
    adversarial_after_steps: int = 1000

    def __post_init__(self):
        if self.style_token_offset is None:
            self.style_token_offset = self.vocab_size - self.n_styles
        if not 0 < self.style_token_offset <= self.vocab_size - self.n_styles:
            raise ValueError("style tokens must lie inside the vocabulary")
        self.d_kernel_sizes = tuple(int(k) for k in self.d_kernel_sizes)  # JSON gives a list back
        if self.rollout_feed not in ROLLOUT_FEEDS:
            raise ValueError(f"rollout_feed must be one of {ROLLOUT_FEEDS}")
        if not (self.gumbel_temperature > 0 and self.gumbel_temperature_end > 0):
            raise ValueError("temperatures must be positive")

    def generator_config(self) -> LSTMConfig:
        return LSTMConfig(self.vocab_size, self.n_styles, self.embed_dim, self.hidden_size, self.num_layers,
                          self.dropout, self.style_dim, self.style_dropout)


class Discriminator(nn.Module):
    """CNN over (soft) one-hot sequences [B,T,V] or token ids [B,T] -> one logit per sequence.

    Embedding is a matrix product with the table, so soft one-hots and real
    tokens go through the same path (ids use a lookup, which is the same thing).
    """

    def __init__(self, config: GANConfig):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(config.vocab_size, config.d_embed_dim) * 0.02)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.d_embed_dim, config.d_channels, k, padding=k // 2) for k in config.d_kernel_sizes
        )
        features = config.d_channels * len(config.d_kernel_sizes)
        self.hidden = nn.Linear(features, features)
        self.drop = nn.Dropout(config.d_dropout)
        self.out = nn.Linear(features, 1)
        self.style_proj = nn.Embedding(config.n_styles, features)
        nn.init.normal_(self.style_proj.weight, std=0.02)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        e = x @ self.embed if x.is_floating_point() else F.embedding(x, self.embed)
        h = e.transpose(1, 2)  # [B, d_embed, T]
        f = torch.cat([F.relu(conv(h)).amax(dim=2) for conv in self.convs], dim=1)
        f = self.drop(f + F.relu(self.hidden(f)))
        return self.out(f).squeeze(-1) + (self.style_proj(style) * f).sum(-1)


def distinct_ngram_ratio(tokens: Tensor, n: int) -> float:
    """Distinct n-grams / all n-grams over a batch of samples, padding excluded: 1.0 when no
    phrase repeats, near 0 when the generator has collapsed onto a few phrases."""
    grams = []
    for row in tokens.tolist():
        row = [t for t in row if t != Tokenizer.pad_id]
        grams += [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class MelodyGAN(nn.Module):
    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.generator = LSTMModel(config.generator_config())
        self.discriminator = Discriminator(config)
        # Tokens that never occur in a body: a rollout may not emit them.
        banned = torch.zeros(config.vocab_size, dtype=torch.bool)
        banned[[Tokenizer.pad_id, Tokenizer.bos_id]] = True
        banned[config.style_token_offset : config.style_token_offset + config.n_styles] = True
        self.register_buffer("banned", banned, persistent=False)

    # -- the LSTM contract, delegated to the generator ----------------------------------
    def forward(self, tokens: Tensor, style: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self.generator(tokens, style, targets)

    def step(self, tokens: Tensor, style: Tensor, cache=None):
        return self.generator.step(tokens, style, cache)

    def select_rows(self, cache, rows: Tensor):
        return self.generator.select_rows(cache, rows)

    def prepare_sampling(self, precision: str) -> None:
        self.generator.prepare_sampling(precision)

    # -- adversarial parts ---------------------------------------------------------------
    def temperature_at(self, adversarial_step: int) -> float:
        """RelGAN's exponential schedule, from gumbel_temperature to gumbel_temperature_end."""
        c = self.config
        frac = min(1.0, adversarial_step / c.anneal_steps) if c.anneal_steps > 0 else 1.0
        return c.gumbel_temperature * (c.gumbel_temperature_end / c.gumbel_temperature) ** frac

    def gumbel_rollout(self, style: Tensor, length: int, temperature: float | None = None) -> Tensor:
        """Sample ``length`` body tokens after ``<bos> STYLE`` as relaxed one-hots [B,length,V].

        The hard token (argmax of the Gumbel-perturbed logits) is an exact sample;
        the rows are its softmax relaxation at ``temperature``. After a sampled
        ``<eos>`` rows are one-hot ``<pad>``, as in the (padded) real data.
        """
        c, g = self.config, self.generator
        tau = temperature if temperature is not None else c.gumbel_temperature
        B, V = style.size(0), c.vocab_size
        prefix = torch.stack([torch.full_like(style, Tokenizer.bos_id), c.style_token_offset + style], dim=1)
        logits, cache = g.run_embeddings(g.tok_emb(prefix), style)
        logits = logits[:, -1]
        table = g.tok_emb.weight
        pad_row = F.one_hot(torch.tensor(Tokenizer.pad_id, device=style.device), V).to(table.dtype)
        done = torch.zeros(B, dtype=torch.bool, device=style.device)
        rows: list[Tensor] = []
        for t in range(length):
            perturbed = logits.masked_fill(self.banned, float("-inf"))
            perturbed = perturbed - torch.empty_like(perturbed).exponential_().clamp_min_(1e-20).log()
            soft = F.softmax(perturbed / tau, dim=-1)
            hard = perturbed.argmax(dim=-1)
            rows.append(torch.where(done[:, None], pad_row, soft))
            done = done | (hard == Tokenizer.eos_id)
            if t == length - 1 or bool(done.all()):
                break
            if c.rollout_feed == "hard":
                x = F.embedding(hard, table)
            elif c.rollout_feed == "soft":
                x = soft @ table
            else:
                x = (F.one_hot(hard, V).to(soft.dtype) - soft.detach() + soft) @ table
            logits, cache = g.run_embeddings(x[:, None, :], style, cache)
            logits = logits[:, 0]
        rows += [pad_row.expand(B, V)] * (length - len(rows))
        return torch.stack(rows, dim=1)

    def _real_body(self, real_tokens: Tensor) -> Tensor:
        """The body of real sequences (after ``<bos> STYLE``), at most gen_len long."""
        if real_tokens.size(1) < 3:
            raise ValueError("real sequences need at least <bos> STYLE and one more token")
        return real_tokens[:, 2 : 2 + self.config.gen_len]

    def discriminator_loss(self, real_tokens: Tensor, style: Tensor,
                           temperature: float | None = None) -> tuple[Tensor, Tensor]:
        """RSGAN: -log sigmoid(D(real) - D(fake)), real and fake paired by style.
        Returns the loss and the fake samples' hard tokens [B, T] (for diversity tracking)."""
        real = self._real_body(real_tokens)
        with torch.no_grad():
            fake = self.gumbel_rollout(style, real.size(1), temperature)
        loss = F.softplus(self.discriminator(fake, style) - self.discriminator(real, style)).mean()
        return loss, fake.argmax(dim=-1)

    def generator_adversarial_loss(self, real_tokens: Tensor, style: Tensor,
                                   temperature: float | None = None) -> Tensor:
        """RSGAN: -log sigmoid(D(fake) - D(real)). Needs real data: the loss is relativistic."""
        real = self._real_body(real_tokens)
        fake = self.gumbel_rollout(style, real.size(1), temperature)
        with torch.no_grad():
            d_real = self.discriminator(real, style)
        return F.softplus(d_real - self.discriminator(fake, style)).mean()

    # -- the training hook ---------------------------------------------------------------
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"generator": adamw(self.generator, lr, weight_decay),
                "discriminator": adamw(self.discriminator, lr, weight_decay)}

    supports_ddp = False  # two losses and two optimizers: gradients are all-reduced in backward_and_step

    def training_step(self, tokens: Tensor, style: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                      step: int, forward: nn.Module | None = None) -> dict[str, float]:
        """MLE only before ``adversarial_after_steps``; then one D step and one G step (adv + MLE)."""
        self.train()
        device = self.banned.device
        tokens, style = tokens.to(device), style.to(device)
        c = self.config
        if step < c.adversarial_after_steps:
            mle = self.generator.mle_loss(tokens, style)
            backward_and_step(mle, self.generator, optimizers["generator"])
            return {"loss": mle.item()}
        tau = self.temperature_at(step - c.adversarial_after_steps)
        d_loss, samples = self.discriminator_loss(tokens, style, tau)
        backward_and_step(d_loss, self.discriminator, optimizers["discriminator"])
        self.discriminator.requires_grad_(False)  # D is a fixed critic for the G step
        try:
            g_loss = self.generator_adversarial_loss(tokens, style, tau)
            mle = self.generator.mle_loss(tokens, style)
            backward_and_step(g_loss + c.mle_weight * mle, self.generator, optimizers["generator"])
        finally:
            self.discriminator.requires_grad_(True)
        return {"loss": mle.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(), "temperature": tau,
                "sample_distinct_4grams": distinct_ngram_ratio(samples, 4)}
