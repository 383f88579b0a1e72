"""Batched, reproducible, grammar-constrained sampling from any melody model.

One call samples a whole batch: one model ``step`` per token for all rows,
with each row's own temperature, top-k, top-p, length and time signature, so
requests batched together by Serve or by the bulk job cost one sampling loop.

Reproducibility is per row: a row's t-th uniform is SplitMix64's t-th output
for the request's seed (a counter-based generator, so a whole batch's draws
for a step are a few vectorised integer operations and need no per-row
state), and it picks its token by inverting the CDF of its filtered distribution. A row's melody therefore
depends on its seed, model and settings, not on which other rows share its
batch (up to floating-point differences between batch sizes, which can flip a
near-tie on another machine, never on a rerun of the same batch).

Models trained with style dropout also know melodies of no given style, and
sample with classifier-free guidance (Ho & Salimans 2022; for language models
Sanchez et al. 2023): each row runs twice, with and without its style, and
the logits ``u + w * (c - u)`` push away from the unstyled distribution, so a
melody is more clearly of its style. ``guidance=1`` is plain conditional sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from musicgen.config import DEFAULT_BARS, DEFAULT_SECTION_BARS, DEFAULT_TOP_P, MAX_BARS
from musicgen.models import unwrap
from musicgen.models.distill import baked_guidance, effective_weight
from musicgen.models.lstm import null_style_index
from musicgen.music.form import parse_form
from musicgen.music.melody import Melody, transpose_to_key
from musicgen.music.performance import performance_for
from musicgen.sampling.copies import BarCopies
from musicgen.sampling.provenance import melody_meta
from musicgen.tokenizers.base import STYLE_POSITION, Tokenizer
from musicgen.tokenizers.grammar import select_rows

MAX_GUIDANCE = 5.0
COMPACT_FRACTION = 8  # compact the batch once 1/8 of its live rows have finished
DRAWS_AHEAD = 64  # uniforms drawn per call, for this many steps
OUT_COLUMNS = 256  # sampled tokens a row's buffer holds at first; it doubles when a melody outgrows it
DEFAULT_GUIDANCE = 2.0  # for models trained with style dropout (see docs/quality.md for how it was chosen)
UNGUIDABLE = "this model was trained without style dropout, so it cannot be guided: use guidance 1"


@dataclass(frozen=True)
class SampleRequest:
    """One melody to sample. ``top_k=0`` and ``top_p=1`` switch those filters off; ``temperature=0`` is greedy."""

    style: str
    seed: int
    bars: int = DEFAULT_BARS
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = DEFAULT_TOP_P
    time_signature: tuple[int, int] | None = None  # None: the model chooses
    key: str | None = None  # None: the model's own key, estimated
    tempo: float | None = None  # quarter notes a minute; None: the style's own (musicgen.music.performance)
    program: int | None = None  # General MIDI instrument; None: the style's own
    primer: Melody | None = None  # a quantised melody to continue; counts towards ``bars``
    guidance: float | None = None  # classifier-free guidance weight; None: the model's default
    form: str | None = None  # section letters such as AABB (musicgen.sampling.form); bars = sections x section_bars
    section_bars: int = DEFAULT_SECTION_BARS
    variation: float = 0.0  # share of a returning section's last bars sampled again (0: an exact repeat)
    loop: bool = False  # the end leads back into the start (a game's music loop), sampled as a form is
    copies: tuple[tuple[int, int], ...] = ()  # (bar, earlier bar): bars that repeat one (musicgen.sampling.copies)

    def __post_init__(self):
        if not 1 <= self.bars <= MAX_BARS:
            raise ValueError(f"bars must be between 1 and {MAX_BARS}")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0, top_k >= 0 and 0 < top_p <= 1")
        if self.guidance is not None and not 0 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"guidance must be between 0 and {MAX_GUIDANCE:g}")
        if self.program is not None and not 0 <= self.program <= 127:
            raise ValueError("program must be a General MIDI program, 0-127")
        if self.primer is not None and self.primer.end >= self.bars * self.primer.bar_ticks:
            raise ValueError(f"the primer already fills {self.primer.n_bars} bars; ask for more than that")
        if self.form is not None:
            self._check_form()
        if any(not 0 <= source < bar < self.bars for bar, source in self.copies):
            raise ValueError(f"copies are (bar, an earlier bar) within the melody's {self.bars} bars")

    def _check_form(self) -> None:
        object.__setattr__(self, "form", parse_form(self.form))  # normalised: AABB
        if self.section_bars < 1 or self.bars != len(self.form) * self.section_bars:
            raise ValueError(f"a form of {len(self.form)} sections of {self.section_bars} bars is "
                             f"{len(self.form) * self.section_bars} bars (at most {MAX_BARS}), not {self.bars}")
        if not 0 <= self.variation <= 1:
            raise ValueError("variation must be between 0 (exact repeats) and 1")
        if self.primer is not None and self.primer.end >= self.section_bars * self.primer.bar_ticks:
            raise ValueError(f"the primer fills {self.primer.n_bars} bars: with a form it must fit in the first "
                             f"section ({self.section_bars} bars)")


def requested_bars(bars: int | None, form: str | None, section_bars: int = DEFAULT_SECTION_BARS) -> int:
    """The length a request asks for: ``bars`` when given, else a form's sections times ``section_bars``,
    else ``DEFAULT_BARS`` (a ``bars`` that disagrees with a form is the request's error to report)."""
    if bars is not None:
        return bars
    return len(form) * section_bars if form else DEFAULT_BARS


@dataclass
class GeneratedMelody:
    melody: Melody
    request: SampleRequest
    tokens: list[int] = field(repr=False)


_GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def uniforms(seeds: np.ndarray, start: int, count: int) -> np.ndarray:
    """Draws ``start .. start + count - 1`` of the SplitMix64 stream of each seed (Steele, Lea & Flood 2014):
    float64 in [0, 1), [B, count]. A sampler takes them a block of steps at a time (one call, not one per step)."""
    steps = np.arange(start + 1, start + count + 1, dtype=np.uint64) * np.uint64(_GOLDEN_GAMMA)
    z = seeds[:, None] + steps[None, :]  # array arithmetic in uint64 wraps, as SplitMix64 wants
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)) * 2.0**-53


def pick_tokens(logits: np.ndarray, allowed: np.ndarray, temperature: np.ndarray, top_k: np.ndarray,
                top_p: np.ndarray, uniform: np.ndarray, filtered: bool = True) -> np.ndarray:
    """One token per row from ``logits`` [B,V] restricted to ``allowed``, by inverse CDF on ``uniform`` [B].

    Filters apply in the usual order: mask, temperature, top-k, then the
    smallest set whose probability reaches top-p (the most likely token always stays).
    ``filtered=False`` promises no row uses top-k, top-p or greedy decoding, and skips the sort.
    Every operation is row-wise, so a row's token never depends on the other rows.
    """
    B, V = logits.shape
    rows = np.arange(B)
    scaled = np.where(allowed, logits, -np.inf)
    if (temperature != 1).any():
        scaled /= np.maximum(temperature, 1e-4)[:, None]
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled, out=scaled)  # unnormalised: the inverse CDF below scales by the row's total
    if filtered:
        probs = weights / weights.sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1, kind="stable")
        probs = probs[rows[:, None], order]
        keep = (np.cumsum(probs, axis=1) - probs) < top_p[:, None]
        if (top_k > 0).any():
            keep &= np.arange(V)[None, :] < np.where(top_k > 0, top_k, V)[:, None]
        weights = probs * keep
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    index = np.minimum((cdf < (uniform * cdf[:, -1])[:, None]).sum(axis=1), V - 1)  # a row-wise searchsorted
    if not filtered:
        return index
    if (temperature == 0).any():
        index = np.where(temperature > 0, index, 0)  # greedy rows take the most likely token
    return order[rows, index]


class Stepper:
    """Feeds tokens to a model's ``step`` and keeps its cache, re-priming a Transformer with the
    second half of its window when a sequence outgrows ``block_size``.

    With ``guidance`` (per row), the model also runs every row without its style
    (the "no style" id, and <pad> for the prompt's STYLE token) in the same batch,
    and the two rows' logits are combined.
    """

    def __init__(self, model: nn.Module, style: Tensor, guidance: Tensor | None = None, pad_id: int = 0):
        self.model, self.guidance, self.pad_id = model, guidance, pad_id
        config = unwrap(model).config
        if guidance is not None:
            style = torch.cat([style, torch.full_like(style, null_style_index(config))])
            self._set_guidance(guidance)
        self.style = style
        self.window = getattr(config, "block_size", None)
        self.history: list[Tensor] = []
        self.cache, self.length = None, 0

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.guidance is not None:
            if self.cache is None and not self.history:  # the prompt: hide its STYLE token
                unstyled = tokens.clone()
                unstyled[:, STYLE_POSITION] = self.pad_id
                tokens = torch.cat([tokens, unstyled])
            else:
                tokens = tokens.repeat(2, 1)
        if self.window is not None:  # only a windowed model re-reads what it has seen
            self.history.append(tokens)
            if self.length + tokens.size(1) > self.window:
                recent = torch.cat(self.history, dim=1)[:, -(self.window // 2):]
                self.cache, self.length, tokens = None, 0, recent
        logits, self.cache = self.model.step(tokens, self.style, self.cache)
        self.length += tokens.size(1)
        if self.guidance is None:
            return logits
        # u + w (c - u), in place (a step of one melody costs its operations' overhead more than their work)
        styled, unstyled_logits = logits.float().chunk(2)
        mixed = torch.sub(styled, unstyled_logits).mul_(self.weight).add_(unstyled_logits)
        return mixed if self.plain is None else torch.where(self.plain, styled, mixed)

    def _set_guidance(self, guidance: Tensor) -> None:
        self.guidance, self.weight = guidance, guidance[:, None]
        plain = guidance == 1  # rows that are not guided take the styled logits as they are
        self.plain = plain[:, None] if bool(plain.any()) else None

    def keep(self, rows: Tensor) -> None:
        """Go on with only these rows of the batch (the others have finished)."""
        if self.guidance is not None:
            self._set_guidance(self.guidance[rows])
            rows = torch.cat([rows, rows + len(self.style) // 2])  # and their unstyled twins
        self.style = self.style[rows]
        self.history = [h[rows] for h in self.history] if self.window is not None else []
        self.cache = self.model.select_rows(self.cache, rows)


@torch.inference_mode()
def _sample_group(model: nn.Module, tokenizer: Tokenizer, requests: list[SampleRequest],
                  prompts: list[list[int]], prompt_bars: list[int], device: torch.device,
                  open_on_a_note: list[bool]) -> list[list[int]]:
    """The model steps on its device; the grammar mask and the token choice run in NumPy on the host.

    Prompts may differ in length (primers: the tune so far of a formed tune). The model reads the
    part every prompt has in one call; a longer prompt's rest is fed a token a step, in the same loop
    in which the others sample, and its row starts sampling where its prompt ends. Each row draws
    its random numbers by its own sampled-token count, so a row comes out the same in any batch."""
    bars, time_signatures = [r.bars for r in requests], [r.time_signature for r in requests]
    grammar = tokenizer.grammar()
    state = grammar.start(bars, time_signatures, prompt_bars, [r.key for r in requests], open_on_a_note)
    lengths = np.array([len(p) for p in prompts])
    common = int(lengths.min())
    prompt = np.full((len(prompts), int(lengths.max())), tokenizer.pad_id, dtype=np.int64)
    for row, ids in enumerate(prompts):
        prompt[row, : len(ids)] = ids
    plans = [dict(r.copies) for r in requests]
    copies = BarCopies(grammar, plans) if any(plans) else None
    for i in range(STYLE_POSITION + 1, common):  # the primer moves the grammar on
        grammar.advance(state, prompt[:, i])
        if copies is not None:
            copies.seen(state, prompt[:, i])
    forced = lengths - common  # prompt tokens each row still has to read, one a step
    max_new = grammar.max_new_tokens(bars, time_signatures) + int(forced.max())

    style = torch.tensor([tokenizer.styles.index(r.style) for r in requests], device=device)
    temperature = np.array([r.temperature for r in requests])
    top_k = np.array([r.top_k for r in requests])
    top_p = np.array([r.top_p for r in requests])
    # a row's k-th sampled token takes draw k of its seed's stream, however many prompt steps come first
    seeds = np.array([r.seed % 2**64 for r in requests], dtype=np.uint64) - forced.astype(np.uint64) * np.uint64(
        _GOLDEN_GAMMA)
    filtered = any(r.top_k > 0 or r.top_p < 1 or r.temperature == 0 for r in requests)
    weights = [mix_weight(model, r) for r in requests]
    guided = any(w != 1 for w in weights)
    guidance = torch.tensor(weights, device=device) if guided else None
    step = Stepper(model, style, guidance, tokenizer.pad_id)
    logits = step(torch.from_numpy(prompt[:, :common]).to(device))
    tail = prompt[:, common:]  # the longer prompts' rest
    out = np.full((len(requests), min(max_new, OUT_COLUMNS)), tokenizer.pad_id)  # grows as needed
    active = np.arange(len(requests))  # rows of ``out`` still being sampled
    for t in range(max_new):
        if t % DRAWS_AHEAD == 0:
            draws = uniforms(seeds, t, DRAWS_AHEAD)
        tokens = pick_tokens(logits.float().cpu().numpy(), grammar.allowed(state), temperature, top_k, top_p,
                             draws[:, t % DRAWS_AHEAD], filtered)
        if copies is not None:
            copies.apply(tokens)
        if t < tail.shape[1]:
            tokens = np.where(forced > t, tail[:, t], tokens)
        grammar.advance(state, tokens)
        if copies is not None:
            copies.seen(state, tokens)
        if t == out.shape[1]:  # max_new is a loose bound: a buffer that wide would cost more than sampling
            out = np.concatenate([out, np.full_like(out, tokenizer.pad_id)], axis=1)
        out[active, t] = tokens
        finished = int(state.done.sum())
        if finished == len(active):
            break
        if finished * COMPACT_FRACTION >= len(active):  # drop finished rows: a batch costs its live rows
            keep = np.flatnonzero(~state.done)
            active, tokens, temperature, top_k, top_p, seeds, draws, forced, tail = (
                x[keep] for x in (active, tokens, temperature, top_k, top_p, seeds, draws, forced, tail))
            state = select_rows(state, keep)
            step.keep(torch.from_numpy(keep).to(device))
            if copies is not None:
                copies.keep(keep)
        logits = step(torch.from_numpy(tokens[:, None]).to(device))
    sampled = [row[n - common :] for row, n in zip(out[:, : t + 1].tolist(), lengths)]
    return [p + row[: row.index(tokenizer.eos_id) + 1] if tokenizer.eos_id in row else p + row
            for p, row in zip(prompts, sampled)]


def resolve_guidance(model: nn.Module, guidance: float | None) -> float:
    """The weight to sample with: ``guidance``, or when None the model's default (``DEFAULT_GUIDANCE``
    for models trained with style dropout, 1 = none for the others, which cannot be guided)."""
    guidable = is_guidable(model)
    if guidance is None:  # a distilled model's default is the weight it samples at in one pass
        baked = baked_guidance(unwrap(model).config)
        return baked if baked != 1 else DEFAULT_GUIDANCE if guidable else 1.0
    if guidance != 1 and not guidable:
        raise ValueError(UNGUIDABLE)
    return guidance


def with_guidance(model: nn.Module, request: SampleRequest) -> SampleRequest:
    """``request`` with its guidance weight resolved (see ``resolve_guidance``)."""
    return replace(request, guidance=resolve_guidance(model, request.guidance))


def mix_weight(model: nn.Module, request: SampleRequest) -> float:
    """The weight the sampler mixes the model's two branches with for ``request`` (resolved): its
    guidance, or for a guidance-distilled model the share of it left to mix (1: one pass, no mixing)."""
    return effective_weight(unwrap(model).config, float(request.guidance))


def is_guidable(model: nn.Module) -> bool:
    """Whether the model learned melodies of no style too (style dropout), as guidance needs."""
    return null_style_index(unwrap(model).config) is not None


def sample_tokens(model: nn.Module, tokenizer: Tokenizer, requests: list[SampleRequest],
                  device: torch.device | str = "cpu", open_on_a_note: list[bool] | None = None) -> list[list[int]]:
    """Token sequences (``<bos> STYLE ... <eos>``) for ``requests``, in order.

    Rows are sampled together in one loop whatever their prompts' lengths
    (a windowed model's only with prompts of the same length), guided rows
    apart from unguided ones (they cost two model rows each); a model is put
    in eval mode first. Rows marked
    ``open_on_a_note`` may not open with a rest (the grammar's ``start``).
    """
    open_on_a_note = list(open_on_a_note or [False] * len(requests))
    model.eval()
    device = torch.device(device)
    requests = [with_guidance(model, r) for r in requests]
    prompts = [tokenizer.prompt(r.style, r.primer, r.time_signature) for r in requests]
    # a model with a window (a Transformer) re-reads its recent tokens when the window fills, at a point
    # that depends on how the prompt was read: its rows share a loop only with prompts of their length
    windowed = getattr(unwrap(model).config, "block_size", None) is not None
    groups: dict[tuple[bool, int], list[int]] = {}
    for i, (ids, _) in enumerate(prompts):
        groups.setdefault((mix_weight(model, requests[i]) != 1, len(ids) if windowed else 0), []).append(i)
    result: list[list[int]] = [[] for _ in requests]
    for rows in groups.values():
        sampled = _sample_group(model, tokenizer, [requests[i] for i in rows], [prompts[i][0] for i in rows],
                                [prompts[i][1] for i in rows], device, [open_on_a_note[i] for i in rows])
        for i, tokens in zip(rows, sampled):
            result[i] = tokens
    return result


def finish_melody(tokenizer: Tokenizer, tokens: list[int], request: SampleRequest) -> Melody:
    """Decode, then ``finish``."""
    melody, _ = tokenizer.decode(tokens)  # the key is estimated (events) or read from K: (abc)
    return finish(melody, request)


def finish(melody: Melody, request: SampleRequest) -> Melody:
    """Set the requested key (by transposition) and tempo of a sampled melody, and record how it was made."""
    if request.key:
        melody = transpose_to_key(melody, request.key, low=21, high=108)
    performance = performance_for(request.style, request.program)
    tempo = request.tempo if request.tempo is not None else performance.quarter_tempo(melody.time_signature)
    return replace(melody, tempo=float(tempo), meta=melody_meta(request, performance.program))
