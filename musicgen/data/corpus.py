"""Export the real music bundled with music21 as a MIDI corpus, one folder per style.

music21 ships a corpus of public-domain scores (``music21/corpus``, installed
with the package; nothing is downloaded). :func:`export_corpus` converts the
parts of it that are melodic and stylistically coherent into MIDI files that
the ordinary MIDI preprocessing reads:

============== ================================================================
style          source in the music21 corpus
============== ================================================================
bach_chorale   ``bach/*.mxl``, ``bach/*.xml``: J.S. Bach's four-part chorales
               (not ``bwv846``, a keyboard prelude; the three ``.krn``
               duplicates are left out). One multi-track MIDI per chorale with
               tracks Soprano, Alto, Tenor, Bass; doubling instruments
               (horns, trumpets, continuo, ...) are dropped.
irish_folk     ``oneills1850/*.abc`` (O'Neill's Music of Ireland),
               ``ryansMammoth/*.abc`` (Ryan's Mammoth Collection),
               ``essenFolksong/irl.abc``. One MIDI per tune.
german_folk    the German collections of the Essen Folksong database:
               ``essenFolksong/`` altdeu10/20, ballad10..80, boehme10/20, dva0,
               erk5/10/20/30, fink0, kinder0, zuccal0. One MIDI per tune.
chinese_folk   ``essenFolksong/han1.abc``, ``han2.abc`` (Essen, Han Chinese).
renaissance    ``palestrina/*.krn`` (Palestrina mass movements). One MIDI per
               voice: ``<file>__<voice index>-<voice name>.mid``.
============== ================================================================

How multi-voice works become melodies: a chorale is written as one MIDI file
whose tracks are named by voice; the preprocessing's track picker
(:func:`musicgen.music.midi.pick_melody_track`) prefers a track named like a
melody or soprano, so the chorale's melody is its soprano (the hymn tune Bach
harmonised). A Palestrina movement has no single melody (every voice carries
the imitative lines), so each voice becomes its own single-track file.

``corpus.csv`` (sorted by path) has one row per MIDI file: ``path`` (relative
to the output folder), ``style``, ``work``, ``source`` (the corpus file),
``title``, ``key``, ``meter``. ``work`` groups files that must share a
train/val/test split: all voices of a Palestrina movement and indeed all
movements of one mass (``palestrina/<mass>``); alternative versions of one
chorale (``bwv18.5-lz`` / ``bwv18.5-w`` -> ``bach/bwv18.5``); and the same
O'Neill's tune transcribed in two of the collection's overlapping files
(``oneills1850/x<tune number>``).

Keys: the Essen collections (german_folk, chinese_folk, Essen irl.abc) write
only the tonic in ``K:``, so their mode is decided from the notes
(``key_is_tonic``); for the Chinese pentatonic songs that tonic is the gong
note, so they all come out as "<gong> major". Palestrina's modes map to the
nearest of major/minor on the same final (dorian/phrygian/aeolian -> minor).

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
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from musicgen.music import notation
from musicgen.music.abc_tunes import abc_tune_number, split_abc_tunes
from musicgen.music.midi import write_midi

log = logging.getLogger(__name__)

STYLES: dict[str, str] = {
    "bach_chorale": "J.S. Bach four-part chorales (music21 bach/*.mxl); the melody is the soprano",
    "irish_folk": "Irish dance tunes and airs: O'Neill's 1850, Ryan's Mammoth, Essen irl.abc",
    "german_folk": "German folk songs from the Essen Folksong collection",
    "chinese_folk": "Han Chinese folk songs from the Essen Folksong collection (han1, han2)",
    "renaissance": "Palestrina mass movements (music21 palestrina/*.krn), one file per voice",
}
CSV_COLUMNS = ("path", "style", "work", "source", "title", "key", "meter")
CSV_NAME = "corpus.csv"

_GERMAN = (
    "altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50",
    "ballad60", "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk5", "erk10",
    "erk20", "erk30", "fink0", "kinder0", "zuccal0",
)
_NOT_CHORALES = {"bwv846"}  # Well-Tempered Clavier prelude in C, two piano staves
_VOICE = re.compile(r"\s*(soprano|alto|tenor|bass)\b[ \t]*(\d?)", re.I)
# rough seconds per item, used to size chunks so each is about half a second of work
_COST = {"abc": 0.02, "chorale": 0.06, "voices": 0.12}


def corpus_dir() -> Path:
    """The music21 corpus folder installed with the package."""
    import music21

    return Path(os.path.dirname(music21.__file__)) / "corpus"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass(frozen=True)
class _Item:
    style: str
    kind: str  # "abc" (one tune), "chorale" (one multi-track file), "voices" (file per voice)
    source: str  # path inside the music21 corpus
    stem: str  # output name without .mid, unique within the style
    work: str
    title: str = ""
    tune: str | None = None  # the ABC text of one tune
    key_is_tonic: bool = False  # Essen ABC: K: names the tonic only

    def owns(self, rel_path: str) -> bool:
        name = rel_path.rsplit("/", 1)[-1]
        return rel_path.startswith(self.style + "/") and (
            name == self.stem + ".mid" or name.startswith(self.stem + "__")
        )


def _interleave(groups: Sequence[Sequence]) -> list:
    """Round-robin over groups: a[0], b[0], c[0], a[1], b[1], ..."""
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out.extend(g[i] for g in groups if i < len(g))
        i += 1
    return out


def _abc_collection(style: str, collection: str, files: Iterable[Path], root: Path) -> list[_Item]:
    """Items of one ABC collection, round-robin over its files."""
    per_file = []
    for path in sorted(files):
        source = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        items, used = [], set()
        for index, tune in enumerate(split_abc_tunes(text)):
            x = abc_tune_number(tune)
            label = f"x{x}" if x is not None else f"n{index + 1}"
            stem = _safe(f"{collection}-{path.stem}_{label}")
            if stem in used:
                stem = _safe(f"{stem}-n{index + 1}")
            used.add(stem)
            if collection == "oneills1850" and x is not None:
                work = f"oneills1850/{label}"  # tune number of the book
            elif collection == "ryansMammoth":
                work = f"ryansMammoth/{path.stem}"
            else:
                work = f"{collection}/{path.stem}/{label}"
            items.append(_Item(style, "abc", source, stem, work, tune=tune,
                               key_is_tonic=source.startswith("essenFolksong/")))
        per_file.append(items)
    return _interleave(per_file)


def _chorale_titles() -> dict[int, str]:
    try:
        from music21.corpus import chorales

        return {int(k): v["title"] for k, v in chorales.ChoraleList().byBWV.items() if v.get("title")}
    except Exception:  # noqa: BLE001 - titles are a nicety
        return {}


def _style_items(style: str, root: Path) -> list[_Item]:
    if style == "bach_chorale":
        titles = _chorale_titles()
        items = []
        for path in sorted([*root.glob("bach/*.mxl"), *root.glob("bach/*.xml")]):
            if path.stem in _NOT_CHORALES:
                continue
            bwv = path.stem.split("-")[0]  # bwv18.5-lz and bwv18.5-w are one chorale
            number = re.fullmatch(r"bwv(\d+)", bwv)
            title = titles.get(int(number.group(1)), "") if number else ""
            items.append(_Item(style, "chorale", path.relative_to(root).as_posix(),
                               _safe(f"bach-{path.stem}"), f"bach/{bwv}", title))
        return items
    if style == "renaissance":
        by_mass: dict[str, list[_Item]] = defaultdict(list)
        for path in sorted(root.glob("palestrina/*.krn")):
            mass = None
            with open(path, encoding="latin-1") as fh:
                for line in fh:
                    if not line.startswith("!!"):
                        break
                    if line.startswith("!!!OPR:"):
                        mass = line.split(":", 1)[1].strip()
            work = f"palestrina/{_slug(mass) if mass else _safe(path.stem)}"
            by_mass[work].append(_Item(style, "voices", path.relative_to(root).as_posix(),
                                       _safe(f"palestrina-{path.stem}"), work))
        return _interleave([by_mass[w] for w in sorted(by_mass)])
    if style == "irish_folk":
        collections = [
            ("oneills1850", list(root.glob("oneills1850/*.abc"))),
            ("ryansMammoth", list(root.glob("ryansMammoth/*.abc"))),
            ("essen", [root / "essenFolksong/irl.abc"]),
        ]
    elif style == "german_folk":
        collections = [("essen", [root / f"essenFolksong/{name}.abc"]) for name in _GERMAN]
    elif style == "chinese_folk":
        collections = [("essen", [root / f"essenFolksong/{name}.abc"]) for name in ("han1", "han2")]
    else:
        raise ValueError(f"unknown style {style!r}; known: {sorted(STYLES)}")
    return _interleave([
        _abc_collection(style, name, [f for f in files if f.exists()], root) for name, files in collections
    ])


# ------------------------------------------------------------------- the worker


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _meter(melody) -> str:
    return f"{melody.time_signature[0]}/{melody.time_signature[1]}"


def _row(item: _Item, rel_path: str, melody) -> dict:
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


def _export_item(item: _Item, root: str, out_dir: str) -> list[dict]:
    folder = Path(out_dir) / item.style
    folder.mkdir(parents=True, exist_ok=True)
    if item.kind == "abc":
        melody = notation.read_abc_tune(item.tune, key_is_tonic=item.key_is_tonic)
        rel = f"{item.style}/{item.stem}.mid"
        _atomic_write(Path(out_dir) / rel, write_midi([("melody", melody)]))
        return [_row(item, rel, melody)]
    path = Path(root) / item.source
    score = notation.parse_score(path.read_bytes(), path.suffix)
    parts = notation.score_parts(score)
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
        rel = f"{item.style}/{item.stem}__{index}-{_slug(name)}.mid"
        _atomic_write(Path(out_dir) / rel, write_midi([(name, melody)]))
        rows.append(_row(item, rel, melody))
    return rows


def _export_chunk(chunk: list[tuple[int, _Item]], root: str, out_dir: str) -> list[tuple[int, list | None, str]]:
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


def _chunks(items: list[tuple[int, _Item]], workers: int) -> list[list[tuple[int, _Item]]]:
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

    items: list[_Item] = []
    for style in styles:
        style_items = _style_items(style, root)
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
    todo: list[tuple[int, _Item]] = []
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

