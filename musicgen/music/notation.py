"""Readers for symbolic notation other than MIDI: ABC, MusicXML and Humdrum **kern.

music21 parses the file; the parts it yields are turned into :class:`Melody`
objects on the way in, so nothing downstream sees a music21 object.

* ``.abc``: a file may hold many tunes (Essen, O'Neill's, Nottingham style).
  :func:`musicgen.music.abc_tunes.split_abc_tunes` cuts it at ``X:`` lines and each tune is
  parsed on its own, so one broken tune costs only itself. :func:`read_notation` returns one
  Melody per tune that parsed; tunes that failed are skipped, logged, and
  appended to the optional ``errors`` list as :class:`UnusableInput` (with
  ``.x`` set to the tune's ``X:`` number). If no tune parses, the first error
  is raised.
* ``.xml`` / ``.musicxml`` / ``.mxl`` (zipped) and ``.krn``: one Melody per
  file, the melodic part chosen with the same rule as MIDI
  (:func:`musicgen.music.midi.pick_melody_track`: a part named like a melody
  or soprano wins, else the high, monophonic, busy one).
* The conversion of a parsed score into melodies (which part is the melody, ties, keys, pickups,
  repeats) is :mod:`musicgen.music.score_melodies`.

An ABC tune is parsed by :func:`musicgen.music.music21_patch.parse_abc`, which skips music21's
beaming pass (engraving only; ABC parses about 2.5x faster) and gives a tune with neither ``L:``
nor ``M:`` the standard default ``L:1/8`` (music21 rejects it otherwise). Nothing here imports torch or Ray.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile

from musicgen.music.abc_tunes import abc_tune_number, split_abc_tunes
from musicgen.music.formats import NOTATION_SUFFIXES
from musicgen.music.melody import Melody
from musicgen.music.midi import UnusableInput
from musicgen.music.music21_patch import parse_abc
from musicgen.music.score_melodies import pick_melody

log = logging.getLogger(__name__)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _mxl_xml(data: bytes) -> bytes:
    """The MusicXML document inside a compressed .mxl archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        root = None
        if "META-INF/container.xml" in names:
            container = archive.read("META-INF/container.xml").decode("utf-8", "replace")
            match = re.search(r'full-path\s*=\s*"([^"]+)"', container)
            if match and match.group(1) in names:
                root = match.group(1)
        if root is None:
            candidates = [n for n in names if not n.startswith("META-INF/")
                          and n.lower().endswith((".xml", ".musicxml"))]
            if not candidates:
                raise UnusableInput("corrupt_notation", "no MusicXML document in the .mxl archive")
            root = candidates[0]
        return archive.read(root)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise UnusableInput("corrupt_notation", f"bad .mxl archive: {exc}") from exc


def parse_score(data: bytes, suffix: str):
    """Parse one non-ABC notation file (``.xml``/``.musicxml``/``.mxl``/``.krn``) with music21.

    Raises ``UnusableInput("corrupt_notation", ...)`` when music21 cannot read it.
    """
    from music21 import converter

    suffix = _normalise_suffix(suffix)
    try:
        if suffix == ".mxl":
            data = _mxl_xml(data)
            suffix = ".xml"
        if suffix in (".xml", ".musicxml"):
            if b"<" not in data[:4096]:
                raise UnusableInput("corrupt_notation", "not an XML document")
            return converter.parseData(data, format="musicxml")
        if suffix == ".krn":
            text = _decode(data)
            if "**kern" not in text:
                raise UnusableInput("corrupt_notation", "no **kern spine in the Humdrum file")
            return converter.parseData(text, format="humdrum")
        if suffix == ".abc":
            return parse_abc(_decode(data))
    except UnusableInput:
        raise
    except Exception as exc:  # noqa: BLE001 - music21 raises many unrelated types
        raise UnusableInput("corrupt_notation", f"music21 could not parse the {suffix} file: {exc}") from exc
    raise UnusableInput("unsupported_format", f"not a notation suffix: {suffix!r}")


def _normalise_suffix(suffix: str) -> str:
    suffix = suffix.lower().strip()
    if not suffix.startswith("."):
        suffix = "." + suffix
    return suffix


def read_abc_tune(tune: str, meta: dict | None = None, key_is_tonic: bool = False) -> Melody:
    """One ABC tune text (as produced by :func:`split_abc_tunes`) as a Melody.

    ``meta`` gains ``x`` (the tune's ``X:`` number), ``title`` and ``track``.
    ``key_is_tonic``: the ``K:`` field names only the tonic and the mode is
    decided from the notes (minor when the minor third above the tonic sounds
    longer than the major third). This is how the Essen Folksong Collection's
    ABC files are written: their ``K: G`` also heads G-minor songs, whose
    accidentals are all written out.
    """
    x = abc_tune_number(tune)
    meta = dict(meta or {})
    if x is not None:
        meta.setdefault("x", x)
    try:
        score = parse_abc(tune)
    except Exception as exc:  # noqa: BLE001
        raise UnusableInput("corrupt_notation", f"ABC tune X:{x}: music21 failed: {exc}") from exc
    try:
        return pick_melody(score, meta, key_is_tonic)
    except UnusableInput as exc:
        raise UnusableInput(exc.kind, f"ABC tune X:{x}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise UnusableInput("corrupt_notation", f"ABC tune X:{x}: {exc}") from exc


def read_notation(
    data: bytes,
    suffix: str,
    meta: dict | None = None,
    errors: list[UnusableInput] | None = None,
    key_is_tonic: bool = False,
) -> list[Melody]:
    """Parse a notation file into melodies.

    ``.abc``: one Melody per tune. A tune that fails is skipped, logged at
    WARNING and, when ``errors`` is a list, appended to it as an
    :class:`UnusableInput` whose ``.x`` is the tune's ``X:`` number; if every
    tune fails the first failure is raised. ``.xml``/``.musicxml``/``.mxl``/
    ``.krn``: a one-element list holding the melodic part. ``key_is_tonic``
    applies to ABC only (see :func:`read_abc_tune`; set it for Essen files). Raises
    :class:`UnusableInput` (``corrupt_notation``, ``no_notes`` or
    ``unsupported_format``) for unusable files.
    """
    suffix = _normalise_suffix(suffix)
    if suffix == ".abc":
        tunes = split_abc_tunes(_decode(data))
        if not tunes:
            raise UnusableInput("no_notes", "the ABC file holds no tune")
        melodies, failures = [], []
        for tune in tunes:
            try:
                melodies.append(read_abc_tune(tune, meta, key_is_tonic))
            except UnusableInput as exc:
                exc.x = abc_tune_number(tune)
                failures.append(exc)
                if len(tunes) > 1:
                    log.warning("skipping ABC tune: %s", exc)
        if errors is not None:
            errors.extend(failures)
        if not melodies:
            raise failures[0]
        return melodies
    if suffix not in NOTATION_SUFFIXES:
        raise UnusableInput("unsupported_format", f"not a notation suffix: {suffix!r}")
    score = parse_score(data, suffix)
    try:
        return [pick_melody(score, meta)]
    except UnusableInput:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UnusableInput("corrupt_notation", f"could not convert the {suffix} score: {exc}") from exc
