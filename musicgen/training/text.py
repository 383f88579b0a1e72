"""The training job's summary as a person reads it (no heavy imports)."""

from __future__ import annotations


def format_training_summary(summary: dict) -> str:
    """The lines ``musicgen train`` (and the demo) print of ``run_training``'s summary."""
    model_bits, ngram_bits = summary["val_bits_per_token"], summary["ngram_bits_per_token"]
    lines = [
        f"{summary['model']} trained for {summary['steps']} steps in {summary['wall_seconds']} s; "
        f"best checkpoint (step {summary['best_step']}) saved as {summary['artifact']}",
        f"{'validation bits/token':<24}{summary['model']:>12}{'5-gram KN':>12}   (best checkpoint)",
    ]
    for key in ["all", *sorted(k for k in model_bits if k != "all")]:
        lines.append(f"{key:<24}{model_bits.get(key, float('nan')):>12.3f}{ngram_bits.get(key, float('nan')):>12.3f}")
    return "\n".join(lines)
