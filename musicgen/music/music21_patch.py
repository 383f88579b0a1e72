"""music21's ABC import, patched: parsing one ABC tune with the two workarounds it needs.

* An ABC tune with neither ``L:`` nor ``M:`` gets the standard default ``L:1/8`` (music21 rejects
  it otherwise).
* music21's beaming pass (engraving only, ~60% of its ABC import time) is skipped: ``Part.makeBeams``
  is swapped for a no-op while the tune is parsed, under a lock, and put back as it was afterwards,
  so ABC parses about 2.5x faster and nothing outside the parse sees the patch.

It lives apart from :mod:`musicgen.music.notation` (which reads the files) so the
one place that monkeypatches a third-party class is small and easy to find. music21 is imported
only when a tune is parsed; importing this module changes nothing.
"""

from __future__ import annotations

import re
import threading

from musicgen.music.abc_tunes import X_LINE

_HAS_L_OR_M = re.compile(r"^[LM]:", re.M)
_beams_lock = threading.Lock()


def _no_beams(self, *args, **kwargs):
    return self


def parse_abc(tune: str):
    """One ABC tune text (as :func:`musicgen.music.abc_tunes.split_abc_tunes` gives) as a music21 score."""
    from music21 import converter, stream

    if not _HAS_L_OR_M.search(tune):
        # ABC's default unit note length is 1/8 without a meter; music21 refuses it
        lines = tune.split("\n")
        at = next((i + 1 for i, ln in enumerate(lines) if X_LINE.match(ln)), 0)
        tune = "\n".join([*lines[:at], "L:1/8", *lines[at:]])

    # Beaming is pure engraving and takes ~60% of music21's ABC import time, so
    # Part.makeBeams is a no-op while the tune is parsed (under a lock, and put
    # back as it was afterwards).
    with _beams_lock:
        own = stream.Part.__dict__.get("makeBeams")
        stream.Part.makeBeams = _no_beams
        try:
            return converter.parseData(tune, format="abc")
        finally:
            if own is None:
                del stream.Part.makeBeams
            else:
                stream.Part.makeBeams = own
