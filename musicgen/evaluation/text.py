"""The evaluation report as text: a few lines for the terminal, a per-style table, and report.md."""

from __future__ import annotations

from musicgen.evaluation.metrics import SCALAR_METRICS

# how near a style's generated mean must come to the real one (issue #24's closing condition)
NEAR_REAL = {"scale_consistency": 0.05, "pitch_class_entropy": 0.25, "pitch_range": 3.0}


def format_summary(report: dict) -> str:
    """A few lines for the terminal: fidelity and novelty per model."""
    real = report["classifier"]["real_accuracy"]["all"]
    lines = [f"style classifier accuracy on held-out real melodies: {real:.1%}"]
    for r in report["models"]:
        nov = r["novelty"]
        lines.append(
            f"{r['label']}: style fidelity {r['style_fidelity']['all']:.1%} over {r['n']} melodies; "
            f"longest run shared with the corpus: mean {nov['mean_longest_shared_run']:.1f}, "
            f"max {nov['max_longest_shared_run']} intervals; exact copies {nov['exact_copies']}"
        )
    return "\n".join(lines)


def format_report(report: dict) -> str:
    styles, models = report["styles"], report["models"]
    real = report["classifier"]["real_accuracy"]
    lines = ["# Evaluation report", "",
             f"Corpus: `{report['config']['data']}`. Style classifier (logistic regression, "
             f"{report['classifier']['train_melodies']} train melodies): accuracy on "
             f"{report['classifier']['test_melodies']} held-out real melodies **{real['all']:.1%}** "
             "(mean over styles).",
             "", "## Models side by side", "",
             "| | " + " | ".join(r["label"] for r in models) + " |",
             "|---|" + "---:|" * len(models)]

    def row(name: str, cells: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("melodies", [str(r["n"]) for r in models])
    row("guidance", [f"{r['guidance']:g}" if r.get("guidance") is not None else "–" for r in models])
    row("**style fidelity (mean)**", [f"**{r['style_fidelity']['all']:.1%}**" for r in models])
    for s in styles:
        row(f"fidelity {s} (real: {real.get(s, float('nan')):.0%})",
            [f"{r['style_fidelity'][s]:.1%}" if s in r["style_fidelity"] else "–" for r in models])
    row("val bits/token (5-gram)", [
        f"{r['training'].get('val_bits_per_token', {}).get('all', float('nan')):.3f} "
        f"({r['training'].get('ngram_bits_per_token', {}).get('all', float('nan')):.3f})" if r["training"] else "–"
        for r in models])
    for m in SCALAR_METRICS:
        row(f"overlap {m.replace('_', ' ')}", [f"{r['metric_overlap'][m]:.2f}" for r in models])
    row("longest shared run, mean / max", [
        f"{r['novelty']['mean_longest_shared_run']:.1f} / {r['novelty']['max_longest_shared_run']}" for r in models])
    row(f"share >= {report['config']['copy_threshold']} intervals",
        [f"{r['novelty']['share_at_or_above_copy_threshold']:.1%}" for r in models])
    row("exact copies", [str(r["novelty"]["exact_copies"]) for r in models])
    for r in models:
        lines += ["", f"## {r['label']}", "", f"![confusion matrix]({r['tag']}-confusion.png)", "",
                  "| style | metric | generated mean | real mean | overlap | KL(real‖gen) |",
                  "|---|---|---:|---:|---:|---:|"]
        for s, v in r["per_style"].items():
            for m, figures in v["metrics"].items():
                lines.append(f"| {s} | {m} | {figures['generated_mean']:.2f} | {figures['real_mean']:.2f} | "
                             f"{figures['overlap']:.2f} | {figures['kl_real_generated']:.2f} |")
        for s in r["per_style"]:
            lines += ["", f"### {s}", "", f"![metrics]({r['tag']}-{s}-metrics.png)", "",
                      f"![piano roll]({r['tag']}-{s}-0.png)"]
            if report["wav_previews"]:
                lines.append(f"[listen]({r['tag']}-{s}-0.wav)")
    return "\n".join(lines) + "\n"


def format_style_table(report: dict) -> str:
    """Per model and style: fidelity, and the tonal metrics' generated mean beside the real one,
    marked when within ``NEAR_REAL`` of it."""
    lines = []
    for r in report["models"]:
        lines += [f"{r['label']}: per style, generated / real (* = within "
                  + ", ".join(f"{v:g}" for v in NEAR_REAL.values()) + " of the real mean)",
                  f"{'style':<14}{'n':>5}{'fidelity':>10}" + "".join(f"{m.replace('_', ' '):>24}" for m in NEAR_REAL)]
        for style, v in r["per_style"].items():
            cells = []
            for m, tolerance in NEAR_REAL.items():
                g, real = v["metrics"][m]["generated_mean"], v["metrics"][m]["real_mean"]
                cells.append(f"{g:.2f} / {real:.2f}{'*' if abs(g - real) <= tolerance else ' '}".rjust(24))
            fidelity = r["style_fidelity"].get(style, float("nan"))
            lines.append(f"{style:<14}{v['n']:>5}{fidelity:>10.1%}" + "".join(cells))
    return "\n".join(lines)
