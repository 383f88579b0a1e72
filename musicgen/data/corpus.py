"""Export the real music bundled with music21 as a MIDI corpus, one folder per style.

:func:`export_corpus` converts the items that :mod:`musicgen.data.corpus_sources`
lists (the music21 corpus files that are melodic and stylistically coherent;
its table says which make each style) into MIDI files that the ordinary MIDI
preprocessing reads.

How multi-voice works become melodies: a chorale is written as one MIDI file
whose tracks are named by voice; the preprocessing's track picker
(:func:`musicgen.music.midi.pick_melody_track`) prefers a track named like a
melody or soprano, so the chorale's melody is its soprano (the hymn tune Bach
harmonised). A Palestrina movement has no single melody (every voice carries
the imitative lines), so each voice becomes its own single-track file.

``corpus.csv`` (sorted by path) has one row per MIDI file: ``path`` (relative
to the output folder), ``style``, ``work``, ``source`` (the corpus file),
``title``, ``key``, ``meter``. ``work`` groups files that must share a
train/val/test split (see :mod:`musicgen.data.corpus_sources`).

Keys: Palestrina's modes map to the nearest of major/minor on the same final
(dorian/phrygian/aeolian -> minor); the Essen collections' mode is decided from
the notes (``key_is_tonic``, see :mod:`musicgen.data.corpus_sources`).

The export is idempotent: an item (one tune or one score) whose MIDI files
exist and whose rows are in ``corpus.csv`` is skipped, and every file
(MIDI and CSV) is written to a temporary name and moved into place.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from musicgen.data.corpus_sources import STYLES, CorpusItem, corpus_dir, items_for_style, slug
from musicgen.music import notation
from musicgen.music.midi import write_midi
from musicgen.music.score_melodies import score_parts

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "style", "work", "source", "title", "key", "meter")
CSV_NAME = "corpus.csv"

_VOICE = re.compile(r"\s*(soprano|alto|tenor|bass)\b[ \t]*(\d?)", re.I)
# rough seconds per item, used to size chunks so each is about half a second of work
_COST = {"abc": 0.02, "chorale": 0.06, "voices": 0.12}


# ------------------------------------------------------------------- the worker


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _meter(melody) -> str:
    return f"{melody.time_signature[0]}/{melody.time_signature[1]}"


def _row(item: CorpusItem, rel_path: str, melody) -> dict:
    title = item.title or str(melody.meta.get("title") or "")
    return {
        "path": rel_path, "style": item.style, "work": item.work, "source": item.source,
        "title": " ".join(title.split()), "key": melody.key, "meter": _meter(melody),
    }


def _satb(parts):
    """The sung voices of a chorale, named Soprano/Alto/Tenor/Bass (plus a number when split)."""
    voices = []
    for name, melody in parts:
        match = _VOICE.match(name)
        if match:
            voices.append((match.group(1).capitalize() + (f" {match.group(2)}" if match.group(2) else ""),
                           melody))
    return voices


def _export_item(item: CorpusItem, root: str, out_dir: str) -> list[dict]:
    folder = Path(out_dir) / item.style
    folder.mkdir(parents=True, exist_ok=True)
    if item.kind == "abc":
        melody = notation.read_abc_tune(item.tune, key_is_tonic=item.key_is_tonic)
        rel = f"{item.style}/{item.stem}.mid"
        _atomic_write(Path(out_dir) / rel, write_midi([("melody", melody)]))
        return [_row(item, rel, melody)]
    path = Path(root) / item.source
    score = notation.parse_score(path.read_bytes(), path.suffix)
    parts = score_parts(score)
    if item.kind == "chorale":
        voices = _satb(parts)
        if not voices:
            raise notation.UnusableInput("no_notes", f"no Soprano/Alto/Tenor/Bass part in {[n for n, _ in parts]}")
        rel = f"{item.style}/{item.stem}.mid"
        _atomic_write(Path(out_dir) / rel, write_midi(voices))
        return [_row(item, rel, voices[0][1])]
    if not parts:
        raise notation.UnusableInput("no_notes", "no part holds notes")
    rows = []
    for index, (name, melody) in enumerate(parts):
        rel = f"{item.style}/{item.stem}__{index}-{slug(name)}.mid"
        _atomic_write(Path(out_dir) / rel, write_midi([(name, melody)]))
        rows.append(_row(item, rel, melody))
    return rows


def _export_chunk(chunk: list[tuple[int, CorpusItem]], root: str, out_dir: str) -> list[tuple[int, list | None, str]]:
    results = []
    for index, item in chunk:
        try:
            results.append((index, _export_item(item, root, out_dir), ""))
        except Exception as exc:  # noqa: BLE001 - one bad score never stops the export
            results.append((index, None, f"{type(exc).__name__}: {exc}"))
    return results


# ------------------------------------------------------------------- the driver


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row.get("path")]


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))
    os.replace(tmp, path)


def _chunks(items: list[tuple[int, CorpusItem]], workers: int) -> list[list[tuple[int, CorpusItem]]]:
    """Chunks of about half a second of work, but at least ~4 per worker; expensive kinds first."""
    total = sum(_COST[item.kind] for _, item in items)
    budget = max(min(0.5, total / (4 * max(workers, 1))), 1e-9)
    chunks, by_kind = [], defaultdict(list)
    for pair in items:
        by_kind[pair[1].kind].append(pair)
    for kind in sorted(by_kind, key=lambda k: -_COST[k]):
        size = max(1, int(budget / _COST[kind]))
        pairs = by_kind[kind]
        chunks.extend(pairs[i : i + size] for i in range(0, len(pairs), size))
    return chunks


def export_corpus(
    out_dir: str | os.PathLike,
    styles: Sequence[str] | None = None,
    limit_per_style: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Export (part of) the music21 corpus as MIDI under ``out_dir`` and write ``corpus.csv``.

    ``styles``: subset of :data:`STYLES` (default: all). ``limit_per_style``:
    take the first N items of each style, in a fixed order that goes
    round-robin over the style's collections and files. ``workers``: processes
    (default ``os.cpu_count()``; 1 runs in this process, no pool).

    Returns ``{"styles": {style: {"items", "exported", "skipped", "failed",
    "works", "files"}}, "skipped", "failed", "files", "seconds", "out_dir"}``
    where ``works``/``files`` count the style's rows in the final corpus.csv
    (this run's and earlier runs') and ``failed`` counts items that raised
    (logged, never fatal).
    """
    started = time.perf_counter()
    styles = list(STYLES) if styles is None else list(styles)
    for style in styles:
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; known: {sorted(STYLES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = corpus_dir()
    csv_path = out / CSV_NAME
    old_rows = _read_csv(csv_path)

    items: list[CorpusItem] = []
    for style in styles:
        style_items = items_for_style(style, root)
        items.extend(style_items if limit_per_style is None else style_items[:limit_per_style])

    rows_by_item: dict[tuple[str, str], list[dict]] = defaultdict(list)
    unowned: list[dict] = []
    stems = {(item.style, item.stem): item for item in items}
    for row in old_rows:
        style, _, name = row["path"].partition("/")
        stem = name[:-4].split("__")[0] if name.endswith(".mid") else name
        if (style, stem) in stems and stems[(style, stem)].owns(row["path"]):
            rows_by_item[(style, stem)].append(row)
        elif (out / row["path"]).exists():
            unowned.append(row)  # another style, or beyond this run's limit: kept as is

    stats = {s: {"items": 0, "exported": 0, "skipped": 0, "failed": 0} for s in styles}
    todo: list[tuple[int, CorpusItem]] = []
    kept: list[dict] = []
    for index, item in enumerate(items):
        stats[item.style]["items"] += 1
        rows = rows_by_item.get((item.style, item.stem), [])
        if rows and all((out / row["path"]).exists() for row in rows):
            stats[item.style]["skipped"] += 1
            kept.extend(rows)
        else:
            todo.append((index, item))

    new_rows: list[dict] = []
    workers = workers or os.cpu_count() or 1
    from tqdm import tqdm

    with tqdm(total=len(todo), disable=not progress, unit="item", desc="corpus export") as bar:

        def collect(results):
            for index, rows, error in results:
                item = items[index]
                if rows is None:
                    stats[item.style]["failed"] += 1
                    log.warning("corpus export: %s (%s) failed: %s", item.source, item.stem, error)
                else:
                    stats[item.style]["exported"] += 1
                    new_rows.extend(rows)
            bar.update(len(results))

        if workers == 1 or len(todo) <= 1:
            for chunk in _chunks(todo, 1):
                collect(_export_chunk(chunk, str(root), str(out)))
        elif todo:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {
                    pool.submit(_export_chunk, chunk, str(root), str(out)): chunk
                    for chunk in _chunks(todo, workers)
                }
                for future in as_completed(futures):
                    try:
                        results = future.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                        results = [(index, None, f"worker failed: {exc!r}") for index, _ in futures[future]]
                    collect(results)

    final = unowned + kept + new_rows
    _write_csv(csv_path, final)
    summary_styles = {}
    for style in styles:
        style_rows = [r for r in final if r["style"] == style]
        summary_styles[style] = {
            **stats[style],
            "works": len({r["work"] for r in style_rows}),
            "files": len(style_rows),
        }
    return {
        "styles": summary_styles,
        "skipped": sum(s["skipped"] for s in stats.values()),
        "failed": sum(s["failed"] for s in stats.values()),
        "files": len(final),
        "seconds": round(time.perf_counter() - started, 2),
        "out_dir": str(out),
    }

