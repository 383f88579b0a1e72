"""Tunes with form, sampled section by section with the tune so far as the model's context.

A request with ``form="AABB"`` and ``section_bars=8`` becomes a 32-bar tune (and its pickup bar, if
it opens with one) in four steps. A new letter is sampled as a continuation of everything before it
(the model hears the earlier sections, so the new material still belongs to the tune); a returning
letter copies its first section, and with ``variation`` samples its last bars again as a varied
ending (a second ending). Each sampled section is picked from ``CANDIDATES`` continuations
(``FINAL_CANDIDATES`` for the tune's end), in a tune with ``copies`` half of which make the bars
it plans to repeat, by how near its repeated bars come to that plan, then by how it comes to rest
(``musicgen.music.form.cadence_score``): on the tonic triad at a section's end, on the tonic at the
tune's end; where no candidate ends the tune on a held tonic, its last beat becomes one
(``close_on_tonic``). A new tune's meter, key and pickup bar, if it opens with one, are drawn once
before its candidates (``_openings``); sections are whole bars after the pickup, and a tune or loop
without one opens on a note. A loop's end is picked instead by how it leads back into the start
(``seam_score``): an interval to the first note that the style's lines take (drawn from the
candidates' own, ``seam_target``), and no full stop before it; a loop sampled whole is tried
starting at each of its phrases (``musicgen.music.loop.rotated``), so that its first note need not
be the tonic it opened on; where no sampled ending takes that interval, the last note moves to take
it if it can (``lead_into_start``). Inside its new sections,
a tune with ``copies`` (``--form auto`` draws those of a melody of the style with the same form)
repeats bars as that melody did (``musicgen.sampling.copies``). The model, tokenizer and grammar are
the ones plain sampling uses: any melody model can sample a form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from musicgen.config import DEFAULT_BARS, DEFAULT_SECTION_BARS
from musicgen.music.form import (
    THROUGH_COMPOSED,
    Copies,
    FormMix,
    cadence_score,
    close_on_tonic,
    notes_before,
    opens_after_bar_line,
    parse_form,
    repeats_in,
    section_slice,
)
from musicgen.music.loop import lead_into_start, loop_starts, rotated, seam_interval, seam_score
from musicgen.music.melody import Melody
from musicgen.sampling.sampler import MAX_BARS, SampleRequest, requested_bars, sample_tokens
from musicgen.tokenizers.base import Tokenizer

AUTO = "auto"  # a form drawn from the style's own mix
CANDIDATES = 4  # continuations sampled for each new section; the one that comes to rest best is kept
FINAL_CANDIDATES = 8  # for the ending that closes the tune
SEAM_CANDIDATES = 16  # last bars sampled again for a loop whose seam missed the interval it aims at


def derived_seed(seed: int, section: int, candidate: int) -> int:
    """The seed of one candidate continuation: independent of the others, the same on every rerun."""
    digest = hashlib.blake2b(f"{seed}/{section}/{candidate}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def is_auto(form: str | None) -> bool:
    """Whether ``form`` asks for a form drawn from the style's own (``auto``, any case)."""
    return form is not None and form.strip().lower() == AUTO


def parse_style_form(text: str) -> tuple[str | None, int | None]:
    """(form, bars a section) of one style's form setting in a bulk job (``BulkConfig.style_forms``):
    ``AABB:8``, ``AABB`` (the job's ``section_bars``: None), ``auto`` or ``none`` (no form)."""
    spec = text.strip()
    if spec.lower() == THROUGH_COMPOSED:
        return None, None
    if is_auto(spec):
        return AUTO, None
    letters, colon, bars = spec.partition(":")
    form = parse_form(letters)
    if not colon:
        return form, None
    if not bars.isdigit() or not 1 <= int(bars) <= MAX_BARS:
        raise ValueError(f"bars a section after the form's colon are a whole number from 1 to {MAX_BARS}, "
                         f"got {text!r} (e.g. AABB:8)")
    return form, int(bars)


def shape_fields(form: str | None, section_bars: int | None, variation: float, bars: int | None, seed: int,
                 mix: FormMix) -> dict:
    """The ``SampleRequest`` fields that give one melody its shape, as generate, Serve and the bulk job
    ask: its form (``AUTO`` drawn for this seed from ``mix``, with the bars that repeat an earlier bar
    in one of the style's melodies of that form and at least the variation its returns had), bars a
    section and variation where it has a form, and its length (``bars`` when given, else the form's,
    else ``DEFAULT_BARS``)."""
    label = draw_label(mix.forms, seed, MAX_BARS) if is_auto(form) else None
    drawn, drawn_bars = (label_shape(label, drawn_length(mix, label, seed)) if label
                         else resolve_form(form, section_bars, seed, mix, MAX_BARS))
    if drawn is None:
        return {"bars": requested_bars(bars, None)}
    fields = {"bars": requested_bars(bars, drawn, drawn_bars), "form": drawn, "section_bars": drawn_bars,
              "variation": variation}
    if label and mix.copies.get(label):
        fields["copies"] = draw_copies(mix.copies[label], seed, fields["bars"])
        fields["variation"] = max(variation, drawn_variation(drawn, drawn_bars, fields["copies"]))
    return fields


def drawn_variation(form: str, section_bars: int, copies: Copies) -> float:
    """The ``variation`` a tune drawn with ``copies`` needs to repeat its sections as the melody they
    come from did: the largest share of a returning section's last bars that differ from its first
    section's (a second ending), 0 where every return was exact."""
    first_equal = dict(copies)

    def origin(bar: int) -> int:  # the first bar of the melody with the same notes
        return first_equal.get(bar, bar)

    varied = 0
    for section, letter in enumerate(form):
        first = form.index(letter)
        if first == section:
            continue
        same = 0
        while same < section_bars and origin(section * section_bars + same) == origin(first * section_bars + same):
            same += 1
        varied = max(varied, section_bars - same)
    return varied / section_bars


def draw_copies(copies: Sequence[Copies], seed: int, bars: int) -> Copies:
    """The repeated bars of one of the style's melodies of the drawn form (``FormMix.copies``), the same
    for the same seed: the bars of the tune that repeat an earlier bar, within its ``bars``."""
    if not copies:
        return ()
    return tuple((bar, source) for bar, source in copies[drawn_melody(len(copies), seed)] if bar < bars)


def drawn_melody(count: int, seed: int) -> int:
    """Which of the ``count`` melodies recorded for a drawn form (``FormMix.copies`` and ``lengths``)
    a tune takes its repeated bars and length from, the same for the same seed."""
    return int(np.random.default_rng(derived_seed(seed, -2, 0)).integers(count))


def drawn_length(mix: FormMix, label: str, seed: int) -> int | None:
    """The whole bars of the melody a tune drawn with ``label`` takes after (``drawn_melody``), at most
    ``MAX_BARS``; None where the mix records no lengths (shards that predate them)."""
    lengths = mix.lengths.get(label)
    return min(max(lengths[drawn_melody(len(lengths), seed)], 1), MAX_BARS) if lengths else None


def label_shape(label: str, length: int | None = None) -> tuple[str, int] | None:
    """(form, bars per section) that a ``form_label`` stands for, or None for one that cannot be
    sampled; a through-composed tune is one section (``A``) of ``length`` bars (the drawn melody's,
    ``drawn_length``; ``DEFAULT_BARS`` where none is known), whose end is still chosen as a tune's
    end is."""
    if label == THROUGH_COMPOSED:
        return "A", length or DEFAULT_BARS
    letters, _, bars = label.partition(":")
    try:
        return parse_form(letters), int(bars)
    except ValueError:
        return None


def draw_label(forms: Mapping[str, int], seed: int, max_bars: int) -> str:
    """A ``form_label`` drawn for ``seed`` from the style's ``forms`` (``FormMix.forms``) in proportion to
    how many of its melodies have it, the same for the same seed; labels that cannot be sampled, or
    are longer than ``max_bars``, are not drawn."""
    choices: list[str] = []
    weights: list[int] = []
    for label, count in sorted(forms.items()):
        shape = label_shape(label)
        if shape is not None and len(shape[0]) * shape[1] <= max_bars:
            choices.append(label)
            weights.append(count)
    if not choices:
        raise ValueError("--form auto draws from the forms the model's training melodies have, and this model "
                         "records none (its shards predate the count): give a form such as AABB")
    draw = np.random.default_rng(derived_seed(seed, -1, 0)).random() * sum(weights)
    return choices[min(int(np.searchsorted(np.cumsum(weights), draw, side="right")), len(choices) - 1)]


def resolve_form(form: str | None, section_bars: int | None, seed: int, mix: FormMix,
                 max_bars: int) -> tuple[str | None, int]:
    """(form, bars per section) for one melody: ``form`` as given (validated), or for ``AUTO`` the shape
    of a label drawn from the style's ``mix`` (``draw_label``, ``label_shape``, ``drawn_length``)."""
    if not is_auto(form):
        return (parse_form(form) if form is not None else None), section_bars or DEFAULT_SECTION_BARS
    label = draw_label(mix.forms, seed, max_bars)
    return label_shape(label, drawn_length(mix, label, seed))


def varied_bars(request: SampleRequest) -> int:
    """Bars at the end of a returning section sampled again (``variation`` of its bars, at most all but one)."""
    return min(request.section_bars - 1, round(request.variation * request.section_bars))


def _ends_tune(request: SampleRequest, section: int) -> bool:
    """Whether the ending sampled at ``section`` is the tune's own: its last section, or the first of
    the letter that closes the tune when that letter returns unvaried."""
    letter = request.form[section]
    return section == len(request.form) - 1 or (
        letter == request.form[-1] and request.form.index(letter) == section and varied_bars(request) == 0)


def section_copies(request: SampleRequest, start_bar: int, end_bar: int, pickup: int = 0) -> Copies:
    """The request's ``copies`` into bars [start_bar, end_bar) of one sampling step of a tune with
    ``pickup`` bars ahead of its sections, with fewer than half a section's bars taken from sections of
    other letters: more would make a new section the same material as an earlier one
    (``form_adherence``), against the form it was drawn with. Copies drawn from a melody whose first
    bar is whole (a later bar repeats it) move on by the pickup, so that they keep their places in
    the sections and no bar copies the pickup's rest."""

    def letter_of(bar: int) -> str:
        return request.form[max(bar - pickup, 0) // request.section_bars]

    copies = request.copies
    if pickup and any(source == 0 for _, source in copies):
        copies = tuple((bar + pickup, source + pickup) for bar, source in copies)
    letter, kept, borrowed = letter_of(start_bar), [], 0
    for bar, source in copies:
        if not start_bar <= bar < end_bar:
            continue
        if letter_of(source) != letter:
            if 2 * (borrowed + 1) >= request.section_bars:
                continue
            borrowed += 1
        kept.append((bar, source))
    return tuple(kept)


def seam_target(candidates: list[Melody], seed: int) -> int | None:
    """The interval a loop's seam aims at: one of the melodic intervals its candidates take, drawn for
    the seed, so that seams step, repeat and leap as often as the style's own lines do (a seam that
    always steps is a seam one hears)."""
    intervals = [b.pitch - a.pitch for c in candidates for a, b in zip(c.notes, c.notes[1:])]
    if not intervals:
        return None
    return intervals[int(np.random.default_rng(derived_seed(seed, -3, 0)).integers(len(intervals)))]


def _continue(model: nn.Module, tokenizer: Tokenizer, jobs: list[tuple[int, Melody | None, int, int, bool, int]],
              requests: list[SampleRequest], section: int, device: torch.device) -> dict[int, Melody]:
    """For each job (row, tune so far, first new bar, end bar, ends the tune, pickup bars): the tune
    continued to its end bar by the best of ``CANDIDATES`` samples, all jobs' candidates in one
    ``sample_tokens`` call. In a tune with ``copies``, half the candidates make the section's planned
    copies and half do not: the plan is how many bars repeat, and where the model repeats bars of its
    own (long lines of long notes do), a candidate without the copies comes nearer to it
    (``_ending_and_repeats``). A tune without (a form asked for) keeps the candidate that comes to
    rest best, its own repeated bars as the model made them."""
    asks, counts, on_a_note, planned = [], [], [], []
    for row, tune, start_bar, end_bar, final, pickup in jobs:
        r = requests[row]
        meter = tune.time_signature if tune is not None else r.time_signature
        counts.append(FINAL_CANDIDATES if final else CANDIDATES)
        on_a_note += [tune is None] * counts[-1]
        planned.append(section_copies(r, start_bar, end_bar, pickup))
        for k in range(counts[-1]):
            asks.append(SampleRequest(
                r.style, derived_seed(r.seed, section, k), bars=end_bar, temperature=r.temperature, top_k=r.top_k,
                top_p=r.top_p, time_signature=meter, key=r.key if tune is None else None, primer=tune,
                guidance=r.guidance, copies=planned[-1] if k % 2 == 0 else ()))
    sampled = sample_tokens(model, tokenizer, asks, device, open_on_a_note=on_a_note)
    out, first, targets = {}, 0, {}
    for (row, tune, start_bar, end_bar, final, _), count, copies in zip(jobs, counts, planned):
        candidates = [tokenizer.decode(tokens)[0] for tokens in sampled[first : first + count]]
        made = [bool(a.copies) for a in asks[first : first + count]]
        first += count
        loop = final and requests[row].loop
        end = end_bar * candidates[0].bar_ticks
        if loop:
            targets[row] = seam_target(candidates, requests[row].seed)
            if tune is None:  # a loop sampled whole may start at any phrase of it that opens on a note
                candidates = [rotated(c, bar, end) for c in candidates for bar in loop_starts(c, end_bar)]
            ranks = [seam_score(c, end, targets[row]) for c in candidates]
        elif requests[row].copies:  # a tune that repeats bars as a melody of its style did
            ranks = [_ending_and_repeats(c, end, final, (start_bar, end_bar), copies, m)
                     for c, m in zip(candidates, made)]
        else:
            ranks = [cadence_score(c, end, final) for c in candidates]
        best = candidates[ranks.index(max(ranks))]  # the first of equals
        start = start_bar * best.bar_ticks
        kept = tune.notes if tune is not None else ()
        best = replace(best, notes=(*kept, *(n for n in best.notes if n.onset >= start)))
        out[row] = close_on_tonic(best) if final and not loop else best
    missed = {row: (out[row], end_bar, targets[row]) for row, _, _, end_bar, _, _ in jobs
              if row in targets and targets[row] is not None and end_bar >= 2
              and seam_interval(out[row], end_bar * out[row].bar_ticks) != targets[row]}
    return out | _aim_seams(model, tokenizer, missed, requests, device)


def _ending_and_repeats(melody: Melody, end_tick: int, final: bool, bars: tuple[int, int],
                        planned: Copies, made: bool) -> tuple[int, bool, int]:
    """A candidate section's rank: how near the number of its bars that repeat an earlier bar comes to
    the ``planned`` copies (the model repeats bars of its own too: in long lines, more often than the
    style does), then whether it ``made`` them (a candidate that did not is kept only where it comes
    nearer), then its ``cadence_score``."""
    return -abs(repeats_in(melody, *bars) - len(planned)), made, cadence_score(melody, end_tick, final)


def _aim_seams(model: nn.Module, tokenizer: Tokenizer, loops: dict[int, tuple[Melody, int, int]],
               requests: list[SampleRequest], device: torch.device) -> dict[int, Melody]:
    """Loops whose seam missed the interval it aims at (row: loop, its bars, the interval), with their
    last bar sampled again ``SEAM_CANDIDATES`` times after the rest of the loop, all in one call: the
    one whose seam scores best is kept, the loop as it was where none scores better; where the kept
    seam still misses, its last note moves to take the interval (``lead_into_start``) if it can."""
    asks, primers = [], {}
    for row, (melody, bars, _) in loops.items():
        primers[row] = replace(melody, notes=notes_before(melody.notes, (bars - 1) * melody.bar_ticks))
        r = requests[row]
        asks += [SampleRequest(r.style, derived_seed(r.seed, -4, k), bars=bars, temperature=r.temperature,
                               top_k=r.top_k, top_p=r.top_p, time_signature=melody.time_signature,
                               primer=primers[row], guidance=r.guidance) for k in range(SEAM_CANDIDATES)]
    sampled = sample_tokens(model, tokenizer, asks, device) if asks else []
    out = {}
    for i, (row, (melody, bars, target)) in enumerate(loops.items()):
        end, cut = bars * melody.bar_ticks, (bars - 1) * melody.bar_ticks
        candidates = [tokenizer.decode(t)[0] for t in sampled[i * SEAM_CANDIDATES : (i + 1) * SEAM_CANDIDATES]]
        best = max(candidates, key=lambda c: seam_score(c, end, target))
        if seam_score(best, end, target) > seam_score(melody, end, target):
            melody = replace(melody, notes=(*primers[row].notes, *(n for n in best.notes if n.onset >= cut)))
        out[row] = lead_into_start(melody, end, target)
    return out


def _openings(model: nn.Module, tokenizer: Tokenizer, requests: list[SampleRequest],
              device: torch.device) -> tuple[list[SampleRequest], list[Melody | None]]:
    """(``requests`` with the meter and key the model chooses for each new tune, the pickup bar each
    opens with or None), both drawn once from one sampled first bar, before any candidate. Picking
    the candidate that ends best must not pick its meter too: endings come to rest more easily in
    some meters, and a style's mix of meters would drift toward them. A first bar that opens with a
    rest is a pickup: the tune keeps it ahead of whole sections, as the corpus's tunes have theirs
    (three quarters of German and Irish tunes, 70 % of chorales); a tune that has none, a loop
    (whose rest would sound at every seam) and a tune of ``MAX_BARS`` already (no request is
    longer) open on a note. Tunes that continue a primer keep its
    meter, key and opening."""
    keyed = len(tokenizer.key_tokens()) > 0  # a vocabulary without KEY tokens has no key to draw
    rows = [row for row, r in enumerate(requests) if r.primer is None]
    asks = [replace(requests[row], seed=derived_seed(requests[row].seed, -5, 0), bars=1, form=None, variation=0.0,
                    copies=(), loop=False) for row in rows]
    sampled = sample_tokens(model, tokenizer, asks, device) if asks else []
    out, pickups = list(requests), [None] * len(requests)
    for row, tokens in zip(rows, sampled):
        bar = tokenizer.decode(tokens)[0]
        out[row] = replace(out[row], time_signature=out[row].time_signature or bar.time_signature,
                           key=out[row].key or (bar.key if keyed else None))
        if opens_after_bar_line(bar) and not out[row].loop and out[row].bars < MAX_BARS:
            pickups[row] = bar
    return out, pickups


def sample_form(model: nn.Module, tokenizer: Tokenizer, requests: list[SampleRequest],
                device: torch.device | str = "cpu") -> list[Melody]:
    """The tunes ``requests`` ask for (each with a ``form``), in order, in the model's own key (the key
    their endings were chosen in) and with their section starts (``Melody.sections``); a tune that opens
    with a pickup bar has it ahead of its whole sections, in its first section (``_openings``)."""
    device = torch.device(device)
    requests = [replace(r, form="A", section_bars=r.bars) if r.form is None else r for r in requests]  # loops
    requests, openings = _openings(model, tokenizer, requests, device)
    tunes: list[Melody | None] = [bar or r.primer for bar, r in zip(openings, requests)]
    pickups = [int(bar is not None) for bar in openings]
    for section in range(max((len(r.form) for r in requests), default=0)):
        jobs = []
        for row, r in enumerate(requests):
            if section >= len(r.form):
                continue
            pickup = pickups[row]
            start_bar, end_bar = pickup + section * r.section_bars, pickup + (section + 1) * r.section_bars
            first = pickup + r.form.index(r.form[section]) * r.section_bars
            if first == start_bar:  # a new letter: new material
                jobs.append((row, tunes[row], start_bar, end_bar, _ends_tune(r, section), pickup))
                continue
            tune, kept = tunes[row], r.section_bars - varied_bars(r)
            tunes[row] = replace(tune, notes=(*tune.notes, *section_slice(tune, first, first + kept, start_bar)))
            if kept < r.section_bars:  # a varied ending: the last bars sampled again
                jobs.append((row, tunes[row], start_bar + kept, end_bar, section == len(r.form) - 1, pickup))
        if jobs:
            for row, tune in _continue(model, tokenizer, jobs, requests, section, device).items():
                tunes[row] = tune
    return [replace(tune, sections=tuple(0 if i == 0 else (pickup + i * r.section_bars) * tune.bar_ticks
                                         for i in range(len(r.form))))
            for tune, r, pickup in zip(tunes, requests, pickups)]
