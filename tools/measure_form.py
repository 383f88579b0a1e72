"""Form, measured: the real styles on preprocessed shards (repeats expanded at ingest), and, with
``--model``, unfiltered tunes a model samples with a form and as loops, against those targets.

Real styles (per style): the forms their written sections make, section lengths, the share of bars
that repeat, and how sections and tunes end.

Sampled (``--model``, ``--n`` per style, each style with its form from ``--forms``): form adherence
(every returning section repeats its first, new sections differ), the bar-repetition overlap with the
real style, how endings come to rest, style fidelity by two classifiers (the model's companion, and
the one ``musicgen evaluate`` fits on the shards' train split), each beside the share of the style's
real test melodies it calls right, and for
``--n`` loops per style the overlap of their seam intervals with the style's own melodic intervals: all
of them, and those arriving on the pitch class a melody opens on (as a seam arrives on the loop's first
note; the real style's own two overlap only so much, the last column).

    python tools/measure_form.py --data artifacts/demo/shards
    python tools/measure_form.py --data artifacts/demo/shards --model pretrained --n 100 \\
        --forms irish_folk=AABB bach_chorale=AAB:4 german_folk=AB chinese_folk=AB renaissance=AB
    python tools/measure_form.py --data shards --model pretrained --n 100 --forms bach_chorale=auto \\
        chinese_folk=auto german_folk=auto irish_folk=auto renaissance=auto
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter

import numpy as np

from musicgen.evaluation.classifier import StyleClassifier
from musicgen.evaluation.form import corpus_by_style, form_profile, format_profiles
from musicgen.evaluation.report import corpus_melodies, fit_style_classifier
from musicgen.music.form import form_adherence, held, scale_degree
from musicgen.music.loop import seam_interval
from musicgen.music.melody import Melody
from musicgen.music.metrics import MAX_INTERVAL, overlapping_area, repetition_ratio

BATCH = 32
SEAM_BINS = ((-12.5, 12.5), 25)  # a bin a semitone, up to an octave either way


def real_intervals(melodies: list[Melody]) -> list[int]:
    """Every melodic interval of a style's melodies (clipped to an octave)."""
    out: list[int] = []
    for m in melodies:
        out += np.clip(np.diff([n.pitch for n in m.notes]), -MAX_INTERVAL, MAX_INTERVAL).tolist()
    return out


def intervals_into_opening(melodies: list[Melody]) -> list[int]:
    """The intervals of a style's melodies that arrive on the pitch class each melody opens on (clipped
    to an octave): what a loop's seam, which arrives on its first note, is if it moves as the style does."""
    out: list[int] = []
    for m in melodies:
        out += [int(np.clip(b.pitch - a.pitch, -MAX_INTERVAL, MAX_INTERVAL)) for a, b in zip(m.notes, m.notes[1:])
                if (b.pitch - m.notes[0].pitch) % 12 == 0]
    return out


def sample(generator, requests: list) -> list:
    out = []
    for start in range(0, len(requests), BATCH):
        out += generator.generate(requests[start : start + BATCH])
    return out


def drawn(tunes: list) -> str:
    """The forms a set of tunes were sampled with, the commonest first: ``AABB:8 40%, none 30%``."""
    counts = Counter(f"{t.request.form}:{t.request.section_bars}" if t.request.form else "none" for t in tunes)
    return ", ".join(f"{label} {n / len(tunes):.0%}" for label, n in counts.most_common(3))


def measure_model(model: str, real: dict[str, list[Melody]], forms: dict[str, str], default_section_bars: int,
                  n: int, loop_bars: int, judge: StyleClassifier, real_test: dict[str, list[Melody]]) -> list[dict]:
    from musicgen.sampling import MelodyGenerator
    from musicgen.sampling.cli_generate import make_requests
    from musicgen.sampling.form import varied_bars

    generator = MelodyGenerator.from_artifact(model, precision="fp32")
    rows = []
    for style, spec in forms.items():
        form, _, bars = spec.partition(":")
        section_bars = int(bars) if bars else default_section_bars
        began = time.perf_counter()
        tunes = sample(generator, make_requests(style, n, 0, form=form, section_bars=section_bars,
                                                form_mix=generator.meta.form_mix(style)))
        loops = sample(generator, make_requests(style, n, 0, bars=loop_bars, loop=True))
        seconds = time.perf_counter() - began
        melodies = [t.melody for t in tunes]
        verdicts = generator.verdicts(melodies, [style] * len(melodies))
        seams = [seam_interval(t.melody) for t in loops]
        every_interval, into_opening = real_intervals(real[style]), intervals_into_opening(real[style])
        formed = [t for t in tunes if t.request.form]
        rows.append({
            "style": style, "form": drawn(tunes) if form == "auto" else form, "section_bars": section_bars, "n": n,
            "adherence": float(np.mean([form_adherence(t.melody, t.request.form, t.request.section_bars,
                                                       varied_bars(t.request)) for t in formed]))
            if formed else None,
            "repetition": float(np.mean([repetition_ratio(m) for m in melodies])),
            "real_repetition": float(np.mean([repetition_ratio(m) for m in real[style]])),
            "repetition_overlap": overlapping_area([repetition_ratio(m) for m in melodies],
                                                   [repetition_ratio(m) for m in real[style]], (0.0, 1.0)),
            "tonic_end": float(np.mean([scale_degree(m.notes[-1].pitch, m.key) == 1 and held(m.notes[-1], m)
                                        for m in melodies])),
            "fidelity": float(np.mean([top == style for _, top in verdicts])) if verdicts[0][1] else None,
            "real_fidelity": float(np.mean([top == style for _, top in generator.verdicts(
                real_test[style], [style] * len(real_test[style]))])) if real_test.get(style) and verdicts[0][1]
            else None,
            "fidelity_evaluate": float(np.mean([top == style for top in judge.predict(melodies)])),
            "real_fidelity_evaluate": float(np.mean([top == style for top in judge.predict(real_test[style])]))
            if real_test.get(style) else None,
            "seam_overlap": overlapping_area(seams, every_interval, *SEAM_BINS),
            "seam_overlap_into_opening": overlapping_area(seams, into_opening, *SEAM_BINS),
            "real_into_opening_overlap": overlapping_area(into_opening, every_interval, *SEAM_BINS),
            "seam_within_fifth": float(np.mean([abs(s) <= 7 for s in seams])),
            "seconds": round(seconds, 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def format_model_rows(rows: list[dict]) -> str:
    lines = ["| style | form (bars a section) | n | form adherence | bars repeated (real) | repetition overlap "
             "| ends on a held tonic | style fidelity (real test melodies): companion, evaluate's | loop seam "
             "overlap: all intervals, into the opening (real: the two) | seams within a fifth |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        def share(value: float | None) -> str:
            return "–" if value is None else f"{value:.0%}"

        fidelity = (f"{share(r['fidelity'])} ({share(r['real_fidelity'])}), "
                    f"{share(r['fidelity_evaluate'])} ({share(r['real_fidelity_evaluate'])})")
        adherence = "–" if r["adherence"] is None else f"{r['adherence']:.0%}"
        lines.append(f"| {r['style']} | {r['form']} ({r['section_bars']}) | {r['n']} | {adherence} | "
                     f"{r['repetition']:.2f} ({r['real_repetition']:.2f}) | {r['repetition_overlap']:.2f} | "
                     f"{r['tonic_end']:.0%} | {fidelity} | {r['seam_overlap']:.2f}, "
                     f"{r['seam_overlap_into_opening']:.2f} ({r['real_into_opening_overlap']:.2f}) | "
                     f"{r['seam_within_fifth']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="shards written by `musicgen preprocess` (folder or s3:// URI)")
    parser.add_argument("--model", help="also measure this model's tunes and loops (an artifact, or pretrained)")
    parser.add_argument("--forms", nargs="*", default=[], metavar="STYLE=FORM[:BARS]",
                        help="the form (and bars a section) each style's tunes are sampled with, or auto: each tune "
                        "draws one from the style's mix (default: AABB)")
    parser.add_argument("--section-bars", type=int, default=8)
    parser.add_argument("--loop-bars", type=int, default=8)
    parser.add_argument("--n", type=int, default=100, help="tunes and loops per style (default: 100)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    real = corpus_by_style(args.data)
    print(format_profiles([form_profile(style, melodies) for style, melodies in real.items()]))
    rows = []
    if args.model:
        forms = {style: "AABB" for style in real} | dict(f.split("=", 1) for f in args.forms)
        judge, _ = fit_style_classifier(corpus_melodies(args.data, "train"))
        real_test = {}
        for x in corpus_melodies(args.data, "test"):
            real_test.setdefault(x.style, []).append(x.melody)
        rows = measure_model(args.model, real, forms, args.section_bars, args.n, args.loop_bars, judge, real_test)
        print(format_model_rows(rows))
    print(f"\n{args.data}, every split; {platform.node()}, {platform.processor() or platform.machine()}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
