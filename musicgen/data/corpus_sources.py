"""Which files of the music21 corpus make each style of the real corpus, listed as items to export.

music21 ships a corpus of public-domain scores (``music21/corpus``, installed
with the package; nothing is downloaded). :func:`items_for_style` lists, for one
style, the items that :func:`musicgen.data.corpus.export_corpus` turns into
MIDI: one tune of an ABC book, one chorale, or one Palestrina movement. The
order goes round-robin over the style's collections and files, so the first N
items of a style draw on all of them.

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

Each item carries its ``work``, which groups items that must share a
train/val/test split: all voices of a Palestrina movement and indeed all
movements of one mass (``palestrina/<mass>``); alternative versions of one
chorale (``bwv18.5-lz`` / ``bwv18.5-w`` -> ``bach/bwv18.5``); and the same
O'Neill's tune transcribed in two of the collection's overlapping files
(``oneills1850/x<tune number>``).

Keys: the Essen collections (german_folk, chinese_folk, Essen irl.abc) write
only the tonic in ``K:``, so their items are marked ``key_is_tonic`` and their
mode is decided from the notes; for the Chinese pentatonic songs that tonic is
the gong note, so they all come out as "<gong> major".

This is apart from the export (worker processes, MIDI files, ``corpus.csv``) so
what the corpus holds can be read on its own. Nothing is read at import.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from musicgen.music.abc_tunes import abc_tune_number, split_abc_tunes

STYLES: dict[str, str] = {
    "bach_chorale": "J.S. Bach four-part chorales (music21 bach/*.mxl); the melody is the soprano",
    "irish_folk": "Irish dance tunes and airs: O'Neill's 1850, Ryan's Mammoth, Essen irl.abc",
    "german_folk": "German folk songs from the Essen Folksong collection",
    "chinese_folk": "Han Chinese folk songs from the Essen Folksong collection (han1, han2)",
    "renaissance": "Palestrina mass movements (music21 palestrina/*.krn), one file per voice",
}


_GERMAN = (
    "altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50",
    "ballad60", "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk5", "erk10",
    "erk20", "erk30", "fink0", "kinder0", "zuccal0",
)
_NOT_CHORALES = {"bwv846"}  # Well-Tempered Clavier prelude in C, two piano staves


def corpus_dir() -> Path:
    """The music21 corpus folder installed with the package."""
    import music21

    return Path(os.path.dirname(music21.__file__)) / "corpus"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass(frozen=True)
class CorpusItem:
    """One thing to export: a tune of an ABC book, a chorale, or a movement written one file per voice."""

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


def _abc_collection(style: str, collection: str, files: Iterable[Path], root: Path) -> list[CorpusItem]:
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
            items.append(CorpusItem(style, "abc", source, stem, work, tune=tune,
                                    key_is_tonic=source.startswith("essenFolksong/")))
        per_file.append(items)
    return _interleave(per_file)


def _chorale_titles() -> dict[int, str]:
    try:
        from music21.corpus import chorales

        return {int(k): v["title"] for k, v in chorales.ChoraleList().byBWV.items() if v.get("title")}
    except Exception:  # noqa: BLE001 - titles are a nicety
        return {}


def items_for_style(style: str, root: Path) -> list[CorpusItem]:
    if style == "bach_chorale":
        titles = _chorale_titles()
        items = []
        for path in sorted([*root.glob("bach/*.mxl"), *root.glob("bach/*.xml")]):
            if path.stem in _NOT_CHORALES:
                continue
            bwv = path.stem.split("-")[0]  # bwv18.5-lz and bwv18.5-w are one chorale
            number = re.fullmatch(r"bwv(\d+)", bwv)
            title = titles.get(int(number.group(1)), "") if number else ""
            items.append(CorpusItem(style, "chorale", path.relative_to(root).as_posix(),
                                    _safe(f"bach-{path.stem}"), f"bach/{bwv}", title))
        return items
    if style == "renaissance":
        by_mass: dict[str, list[CorpusItem]] = defaultdict(list)
        for path in sorted(root.glob("palestrina/*.krn")):
            mass = None
            with open(path, encoding="latin-1") as fh:
                for line in fh:
                    if not line.startswith("!!"):
                        break
                    if line.startswith("!!!OPR:"):
                        mass = line.split(":", 1)[1].strip()
            work = f"palestrina/{slug(mass) if mass else _safe(path.stem)}"
            by_mass[work].append(CorpusItem(style, "voices", path.relative_to(root).as_posix(),
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
