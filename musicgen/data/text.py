"""The preprocessing job's summary as a person reads it (no heavy imports)."""

from __future__ import annotations


def format_preprocess_summary(stats: dict) -> str:
    """The lines ``musicgen preprocess`` (and the demo) print of ``run_preprocess``'s stats."""
    lines = [
        f"{stats['files_read']} files read in {stats['wall_seconds']} s ({stats['files_per_second']} files/s), "
        f"{stats['files_failed']} failed, {stats['duplicates_dropped']} duplicates dropped",
        f"{'style':<16}{'train':>8}{'val':>6}{'test':>6}{'tokens':>10}",
    ]
    for style, entry in sorted(stats["per_style"].items()):
        m = entry["melodies"]
        lines.append(f"{style:<16}{m['train']:>8}{m['val']:>6}{m['test']:>6}{sum(entry['tokens'].values()):>10}")
    if stats["errors"]:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(stats["errors"].items())))
    return "\n".join(lines)
