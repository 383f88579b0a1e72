"""How the tunes of a style are built: the forms their written sections make, how long the sections
are, how many bars repeat, and how sections and tunes end. Measured on the corpus with repeats
expanded (ingest writes every pass of a repeated strain and records where each section starts),
these are the targets form-aware generation is judged against."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from musicgen.data import shards
from musicgen.music.form import STABLE_DEGREES, held, last_note, scale_degree, section_bar_ranges, written_form
from musicgen.music.melody import Melody
from musicgen.music.metrics import repetition_ratio
from musicgen.tokenizers import tokenizer_from_dict


@dataclass(frozen=True)
class FormProfile:
    style: str
    melodies: int
    with_sections: int  # melodies whose written form has two or more sections
    forms: dict[str, int]  # form -> melodies, over those with sections
    section_bars: tuple[int, ...]  # the length of every section of those melodies
    repetition: float  # mean share of bars that repeat an earlier bar exactly (every melody)
    section_end_stable: float  # share of inner section ends on a note of the tonic triad
    section_end_long: float  # share of inner section ends on a held note (``held``: half a beat or more)
    tune_end_tonic: float  # share of melodies whose last note is the tonic
    tune_end_long: float  # share of melodies whose last note is held

    def common_forms(self, n: int = 3) -> list[tuple[str, int]]:
        return Counter(self.forms).most_common(n)


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def form_profile(style: str, melodies: Sequence[Melody]) -> FormProfile:
    """The ``FormProfile`` of one style's melodies (each with its recorded section starts)."""
    forms: Counter[str] = Counter()
    lengths: list[int] = []
    inner_stable, inner_long, end_tonic, end_long = [], [], [], []
    for melody in melodies:
        ranges = section_bar_ranges(melody)
        if len(ranges) >= 2:
            forms[written_form(melody)] += 1
            lengths += [b - a for a, b in ranges]
            for start in sorted(t for t in melody.sections if t > 0):  # before the next section's pickup
                note = last_note(melody, start)
                if note is not None:
                    inner_stable.append(scale_degree(note.pitch, melody.key) in STABLE_DEGREES)
                    inner_long.append(held(note, melody))
        note = last_note(melody)
        if note is not None:
            end_tonic.append(scale_degree(note.pitch, melody.key) == 1)
            end_long.append(held(note, melody))
    return FormProfile(
        style, len(melodies), sum(forms.values()), dict(forms), tuple(lengths),
        statistics.fmean(repetition_ratio(m) for m in melodies) if melodies else float("nan"),
        _share(inner_stable), _share(inner_long), _share(end_tonic), _share(end_long))


def corpus_by_style(data: str, splits: Sequence[str] = shards.SPLITS) -> dict[str, list[Melody]]:
    """Every melody of the shards' ``splits``, decoded with its recorded section starts, by style."""
    tokenizer = tokenizer_from_dict(shards.read_vocab(data))
    out: dict[str, list[Melody]] = {}
    for table in shards.read_splits(data, splits, ("tokens", "style", "sections")).values():
        for tokens, style, sections in zip(*(table.column(c).to_pylist() for c in ("tokens", "style", "sections"))):
            melody, _ = tokenizer.decode(tokens)
            out.setdefault(style, []).append(replace(melody, sections=tuple(sections or ())))
    return dict(sorted(out.items()))


def format_profiles(profiles: Sequence[FormProfile]) -> str:
    """A Markdown table, one row per style."""
    lines = ["| style | melodies | with sections | common forms | section bars (median) | bars repeated | "
             "section ends on 1-3-5 | section ends held | tune ends on tonic | tune ends held |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for p in profiles:
        forms = ", ".join(f"{f} ({n})" for f, n in p.common_forms()) or "–"
        median = f"{statistics.median(p.section_bars):g}" if p.section_bars else "–"
        shares = (p.repetition, p.section_end_stable, p.section_end_long, p.tune_end_tonic, p.tune_end_long)
        cells = " | ".join("–" if s != s else f"{s:.2f}" for s in shares)
        lines.append(f"| {p.style} | {p.melodies} | {p.with_sections} | {forms} | {median} | {cells} |")
    return "\n".join(lines)
