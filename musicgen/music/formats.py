"""File formats: the suffixes musicgen reads, and the names of the formats it writes.

Reading goes by a file's suffix (lower-cased): MIDI through :mod:`musicgen.music.midi`, the
notation formats through :mod:`musicgen.music.notation`. Preprocessing, ``--primer`` and the
notation reader all take their lists from here.

A written file's format is named by its suffix (``mid``, not ``midi``): ``musicgen generate
--format``, the bulk job's columns and :func:`musicgen.music.export.to_bytes` use
:data:`OUTPUT_FORMATS`. The HTTP service names its answer's parts differently
(:data:`SERVED_FORMATS`: ``midi`` arrives as ``midi_base64``), and
:data:`FORMAT_ALIASES` maps such a name onto the file format it is.
"""

from __future__ import annotations

MIDI_SUFFIXES = (".mid", ".midi")
ABC_SUFFIX = ".abc"
MUSICXML_SUFFIXES = (".xml", ".musicxml", ".mxl")  # .mxl: a zipped MusicXML document
KERN_SUFFIX = ".krn"  # Humdrum **kern
NOTATION_SUFFIXES = (ABC_SUFFIX, *MUSICXML_SUFFIXES, KERN_SUFFIX)  # read through music21
INPUT_SUFFIXES = MIDI_SUFFIXES + NOTATION_SUFFIXES  # every file a melody can be read from

OUTPUT_FORMATS = ("mid", "abc", "musicxml", "json", "wav", "png")
SERVED_FORMATS = ("json", "midi", "abc")  # the service's names for the parts of a melody it returns
FORMAT_ALIASES = {"midi": "mid"}  # another name for a format -> its name in OUTPUT_FORMATS


def output_format(name: str) -> str:
    """The :data:`OUTPUT_FORMATS` name of a format name or alias ('midi' -> 'mid'); unknown names unchanged."""
    return FORMAT_ALIASES.get(name, name)
