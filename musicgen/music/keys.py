"""Keys, key signatures, modes and scales: the music facts every reader, writer and tokenizer shares.

A key is named ``"<tonic> <mode>"`` with a normalised tonic (:data:`PITCH_CLASS_NAMES`) and a
mode of ``major`` or ``minor`` (``"F# minor"``). A key signature is a number of sharps,
negative for flats (``fifths`` in MusicXML, ``key`` in a MIDI key-signature event):

* :func:`key_to_sharps` / :func:`key_spelling`: key -> sharps (and the tonic spelled within
  seven accidentals, ``"Db major"`` -> ``("Db", -5)``);
* :func:`key_from_sharps`: sharps and major/minor -> key, the inverse;
* :func:`key_signature`: sharps -> the alteration of each letter;
* :data:`MODE_FIFTHS`: each church mode's place on the circle of fifths relative to its
  major (ionian) key; a mode with a minor third (dorian, phrygian, aeolian, locrian) is
  read as minor, the others as major (:func:`mode_family`), as ABC, Humdrum and
  music21 keys are mapped onto the models' two modes;
* :data:`MAJOR_SCALE`, :data:`MINOR_SCALE`: the scale steps in semitones.

Pure Python, no imports from the rest of musicgen.
"""

from __future__ import annotations

import functools

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
NAME_TO_PC = {
    "C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4,
    "F": 5, "E#": 5, "F#": 6, "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9,
    "A#": 10, "BB": 10, "B": 11, "CB": 11,
}
NATURAL_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}  # a natural letter's major key
SHARP_ORDER = "FCGDAEB"  # the order sharps are added (flats: reversed)
ACCIDENTAL_ALTERATION = {"": 0, "#": 1, "b": -1}  # the spelling of a tonic's accidental

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor (aeolian)

# Position on the circle of fifths of each mode relative to its major (ionian) key.
MODE_FIFTHS = {"lydian": 1, "major": 0, "ionian": 0, "mixolydian": -1, "dorian": -2, "minor": -3, "aeolian": -3,
               "phrygian": -4, "locrian": -5}
# The three-letter abbreviations ABC (K:Ador) and Humdrum (*A:dor) write: "maj", "ion", "mix", "dor", ...
MODE_ABBREVIATIONS = {name[:3]: fifths for name, fifths in MODE_FIFTHS.items()}
MINOR_THIRD_FIFTHS = -2  # modes this far or further flatwards have a minor third


def mode_fifths(mode: str) -> int:
    """:data:`MODE_FIFTHS` of a full name (``dorian``) or an abbreviation (``dor``); 0 (major) when unknown."""
    return MODE_FIFTHS.get(mode, MODE_ABBREVIATIONS.get(mode, 0))


def mode_family(mode: str) -> str:
    """'major' or 'minor': the nearest of the two on the same final (see :func:`mode_fifths`)."""
    return "minor" if mode_fifths(mode) <= MINOR_THIRD_FIFTHS else "major"


def parse_key(key: str) -> tuple[int, str]:
    """'F# minor' -> (6, 'minor'). Unknown modes count as major."""
    parts = key.replace("-", "b").split()
    tonic = parts[0][0].upper() + parts[0][1:].upper()
    mode = parts[1].lower() if len(parts) > 1 else "major"
    if tonic not in NAME_TO_PC:
        raise ValueError(f"unknown key {key!r}")
    return NAME_TO_PC[tonic], ("minor" if mode == "minor" else "major")


def key_name(tonic_pc: int, mode: str) -> str:
    return f"{PITCH_CLASS_NAMES[tonic_pc % 12]} {mode}"


def key_from_sharps(sharps: int, minor: bool) -> str:
    """Key name from a key signature (number of sharps, negative for flats)."""
    tonic = (7 * sharps + (9 if minor else 0)) % 12
    return key_name(tonic, "minor" if minor else "major")


def key_spelling(key: str) -> tuple[str, int]:
    """'F# minor' -> ('F#', 3): the tonic as written and the key's number of sharps (negative: flats).

    The key's own tonic spelling is kept when it has a signature of at most
    seven accidentals (``Db major`` stays ``Db``, -5); otherwise the normalised
    name is used (``B# major`` becomes ``C``, 0).
    """
    tonic_pc, mode = parse_key(key)
    spelled = key.replace("-", "b").split()[0]
    for name in (spelled, PITCH_CLASS_NAMES[tonic_pc]):
        letter, rest = name[0].upper(), name[1:].lower()
        alteration = ACCIDENTAL_ALTERATION.get(rest)
        if alteration is None:
            continue
        fifths = LETTER_FIFTHS[letter] + 7 * alteration + MODE_FIFTHS[mode]
        if abs(fifths) <= 7:
            return letter + rest, fifths
    raise AssertionError("unreachable: every normalised key has at most 7 accidentals")


def key_to_sharps(key: str) -> int:
    """'F# minor' -> 3, 'Bb major' -> -2: the inverse of :func:`key_from_sharps`."""
    return key_spelling(key)[1]


def key_signature(fifths: int) -> dict[str, int]:
    """Alteration of each letter under a key signature of ``fifths`` sharps (negative: flats)."""
    fifths = max(-7, min(7, fifths))
    sig = dict.fromkeys(NATURAL_PC, 0)
    letters = SHARP_ORDER[:fifths] if fifths > 0 else SHARP_ORDER[::-1][: -fifths]
    for letter in letters:
        sig[letter] = 1 if fifths > 0 else -1
    return sig


@functools.cache
def pitch_spelling(key: str) -> tuple[tuple[str, int], ...]:
    """(letter, alteration) of each pitch class in ``key``, the one spelling rule of every writer (ABC,
    MusicXML, note names): the key signature's own, else a natural, else a sharp (sharp keys and C) or
    a flat (flat keys); in a minor key the raised 6th and 7th of melodic minor are its 6th and 7th
    letters raised (F# in G minor, not Gb; C# in D minor, not Db)."""
    tonic, mode = parse_key(key)
    fifths = key_spelling(key)[1]
    sig = key_signature(fifths)
    out: list[tuple[str, int]] = []
    for pc in range(12):
        choice = next(((k, a) for k, a in sig.items() if (NATURAL_PC[k] + a) % 12 == pc), None)
        if choice is None:
            choice = next(((k, 0) for k, p in NATURAL_PC.items() if p == pc), None)
        if choice is None:
            step = 1 if fifths >= 0 else -1
            choice = next((k, step) for k, p in NATURAL_PC.items() if (p + step) % 12 == pc)
        out.append(choice)
    if mode == "minor":
        for natural in (8, 10):  # the 6th and the 7th of natural minor, a semitone higher
            letter, alteration = out[(tonic + natural) % 12]
            if alteration < 1:
                out[(tonic + natural + 1) % 12] = (letter, alteration + 1)
    return tuple(out)
