"""Writers from a :class:`Melody` to the files people open: MIDI, ABC, MusicXML, JSON, WAV and PNG.

Each writer is a pure function from a melody to bytes (or a dict for JSON), so
the CLI, Serve and the bulk job share them; :func:`write_outputs` puts a chosen
set next to each other under one stem, locally or on S3. WAV needs the
``fluidsynth`` program and a General MIDI soundfont, which not every machine
has: :func:`wav_available` says whether it can be written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from musicgen import storage
from musicgen.music import abc
from musicgen.music.formats import OUTPUT_FORMATS, output_format
from musicgen.music.keys import key_to_sharps, parse_key, pitch_spelling
from musicgen.music.melody import TICKS_PER_BEAT, Melody
from musicgen.music.midi import write_midi
from musicgen.music.performance import performance_for

if TYPE_CHECKING:
    from music21 import key as m21key
    from music21 import pitch as m21pitch
    from music21 import stream as m21stream

log = logging.getLogger(__name__)

FORMATS = OUTPUT_FORMATS
SOUNDFONT_ENV = "MUSICGEN_SOUNDFONT"
# where Debian/Ubuntu (fluid-soundfont-gm, musescore-general-soundfont), Fedora, Arch and Homebrew put one
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
SAMPLE_RATE = 44100


class WavUnavailable(RuntimeError):
    """fluidsynth or a soundfont is missing, or fluidsynth failed: the other formats can still be written."""


def parse_formats(text: str) -> tuple[str, ...]:
    """'mid,abc' -> ('mid', 'abc'); 'all' -> every format; 'midi' is 'mid'. Order kept, repeats dropped."""
    names = [output_format(n.strip().lower()) for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return FORMATS
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown format {', '.join(unknown) or repr(text)}; choose from {', '.join(FORMATS)} or all")
    return tuple(dict.fromkeys(names))


# ------------------------------------------------------------------ spelling


def _m21_key(name: str) -> m21key.Key:
    """music21 Key with the tonic spelled as :func:`musicgen.music.keys.key_spelling` spells it
    (at most seven accidentals)."""
    from music21 import key

    return key.KeySignature(key_to_sharps(name)).asKey(parse_key(name)[1])


def _pitch_class_names(key: str) -> tuple[str, ...]:
    """music21 name of each pitch class in ``key``, spelled by ``musicgen.music.keys.pitch_spelling``."""
    return tuple(letter + ("#" * alteration if alteration > 0 else "-" * -alteration)
                 for letter, alteration in pitch_spelling(key))


def spell(midi_pitch: int, key: str) -> m21pitch.Pitch:
    """A music21 Pitch for a MIDI pitch, spelled for ``key`` ('Bb4' in F major, 'A#4' in B major)."""
    from music21 import pitch

    p = pitch.Pitch(_pitch_class_names(key)[midi_pitch % 12])
    p.octave = 4
    p.octave += (midi_pitch - p.midi) // 12  # B#3 and Cb4 sit in another octave than their sound
    return p


def note_name(midi_pitch: int, key: str) -> str:
    """Scientific pitch name spelled for ``key``: 'Bb4', 'F#5', 'C4' (middle C)."""
    return spell(midi_pitch, key).nameWithOctave.replace("-", "b")


# ------------------------------------------------------------------ writers


def to_midi_bytes(melody: Melody, name: str = "melody") -> bytes:
    """A one-track Standard MIDI File with meter, key and tempo, played as its style is
    (``meta["style"]``; the instrument ``meta["program"]`` where a request chose one)."""
    return write_midi([(name, melody)], performance_for(melody.meta.get("style"), melody.meta.get("program")))


def to_abc_text(melody: Melody, title: str | None = None) -> str:
    """A complete ABC 2.1 tune in the canonical spelling of the ABC tokenizer (:mod:`musicgen.music.abc`)."""
    return abc.to_abc(melody, title)


def _m21_part(melody: Melody) -> m21stream.Part:
    """A flat music21 Part: meter, key, tempo, then notes with rests in the gaps, not yet in measures."""
    from music21 import clef, instrument, meter, note, stream, tempo

    part = stream.Part()
    voice = instrument.Instrument()
    voice.partId, voice.partName = "P1", "Melody"  # else music21 draws a random part id on every export
    part.append(voice)
    part.append(meter.TimeSignature(f"{melody.time_signature[0]}/{melody.time_signature[1]}"))
    part.append(_m21_key(melody.key))
    part.append(tempo.MetronomeMark(number=round(melody.tempo, 2), referent="quarter"))
    cursor = 0
    for n in melody.notes:
        if n.onset < cursor:
            raise ValueError("notes overlap: MusicXML export needs a monophonic melody in time order")
        if n.onset > cursor:
            part.append(note.Rest(quarterLength=Fraction(n.onset - cursor, TICKS_PER_BEAT)))
        part.append(note.Note(spell(n.pitch, melody.key), quarterLength=Fraction(n.duration, TICKS_PER_BEAT)))
        cursor = n.onset + n.duration
    part.insert(0, clef.bestClef(part, allowTreble8vb=True))  # bass clef for low lines, not ledger lines
    return part


def to_musicxml_bytes(melody: Melody, title: str | None = None) -> bytes:
    """A MusicXML score: one part in measures, notes tied across bar lines, triplets bracketed."""
    from music21 import metadata, stream
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    part = _m21_part(melody)
    part.makeNotation(inPlace=True)  # measures, ties at bar lines, beams, accidentals, tuplet brackets
    score = stream.Score([part])
    score.metadata = metadata.Metadata(title=title or melody.meta.get("title") or "Untitled", composer="musicgen")
    return GeneralObjectExporter(score).parse()


def to_json_dict(melody: Melody, **metadata) -> dict:
    """The melody as plain data for programs: every note in ticks, beats (quarter notes) and
    seconds at the tempo, with names spelled for the key; ``metadata`` (and ``melody.meta``) go under ``meta``."""
    seconds_per_tick = 60.0 / melody.tempo / TICKS_PER_BEAT
    n, d = melody.time_signature
    return {
        "key": melody.key,
        "time_signature": f"{n}/{d}",
        "tempo": melody.tempo,
        "ticks_per_beat": TICKS_PER_BEAT,
        "bars": melody.n_bars,
        "duration_seconds": round(melody.end * seconds_per_tick, 6),
        "meta": {**melody.meta, **metadata},
        "notes": [
            {
                "pitch": note.pitch,
                "name": note_name(note.pitch, melody.key),
                "onset_ticks": note.onset,
                "duration_ticks": note.duration,
                "onset_beats": round(note.onset / TICKS_PER_BEAT, 6),
                "duration_beats": round(note.duration / TICKS_PER_BEAT, 6),
                "onset_seconds": round(note.onset * seconds_per_tick, 6),
                "duration_seconds": round(note.duration * seconds_per_tick, 6),
            }
            for note in melody.notes
        ],
    }


def find_soundfont() -> str | None:
    """``$MUSICGEN_SOUNDFONT`` if set, else the first General MIDI soundfont in the usual places."""
    if os.environ.get(SOUNDFONT_ENV):
        return os.environ[SOUNDFONT_ENV]
    return next((p for p in SOUNDFONT_PATHS if os.path.isfile(p)), None)


def wav_available() -> bool:
    """Whether :func:`to_wav_bytes` can run here: fluidsynth on PATH and a soundfont found."""
    soundfont = find_soundfont()
    return shutil.which("fluidsynth") is not None and soundfont is not None and os.path.isfile(soundfont)


def to_wav_bytes(melody: Melody, soundfont: str | None = None) -> bytes:
    """16-bit 44.1 kHz stereo WAV of the MIDI file (its style's instrument) played through fluidsynth.
    A loop (``meta["loop"]``) is played twice and its second pass kept, exactly its bars long: the
    notes still ringing at its end sound over its start, as they will when a player repeats it."""
    if not melody.meta.get("loop"):
        return midi_to_wav_bytes(to_midi_bytes(melody), soundfont)
    length = melody.n_bars * melody.bar_ticks
    twice = replace(melody, notes=(*melody.notes, *(n._replace(onset=n.onset + length) for n in melody.notes)),
                    sections=(), meta={**melody.meta, "loop": False})
    seconds = length / TICKS_PER_BEAT * 60 / melody.tempo
    return wav_slice(midi_to_wav_bytes(to_midi_bytes(twice), soundfont), seconds, 2 * seconds)


def wav_slice(wav: bytes, start_seconds: float, end_seconds: float) -> bytes:
    """The frames of a WAV between two times (silence where it ends early), as a WAV."""
    with wave.open(io.BytesIO(wav)) as reader:
        params, rate = reader.getparams(), reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    width = params.sampwidth * params.nchannels
    start, end = round(start_seconds * rate), round(end_seconds * rate)
    kept = frames[start * width : end * width]
    kept += b"\0" * ((end - start) * width - len(kept))
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(kept)
    return out.getvalue()


def midi_to_wav_bytes(midi: bytes, soundfont: str | None = None) -> bytes:
    """A MIDI file played through fluidsynth, as written (its instruments, tempo and velocities)."""
    soundfont = soundfont or find_soundfont()
    if shutil.which("fluidsynth") is None:
        raise WavUnavailable("WAV needs the fluidsynth program (apt-get install fluidsynth, brew install fluid-synth)")
    if soundfont is None or not os.path.isfile(soundfont):
        raise WavUnavailable(
            f"WAV needs a General MIDI soundfont: none at {soundfont or ', '.join(SOUNDFONT_PATHS)}; "
            f"install fluid-soundfont-gm or set {SOUNDFONT_ENV}=/path/to/font.sf2"
        )
    with tempfile.TemporaryDirectory(prefix="musicgen-wav-") as tmp:
        midi_path, wav_path = os.path.join(tmp, "in.mid"), os.path.join(tmp, "out.wav")
        with open(midi_path, "wb") as f:
            f.write(midi)
        # dynamic sample loading reads only the instrument's samples of the 140 MB GM font, not all of
        # it: the same bytes out, in about two thirds of the time (a melody renders faster than it loads)
        result = subprocess.run(
            ["fluidsynth", "-ni", "-o", "synth.dynamic-sample-loading=1", "-T", "wav", "-F", wav_path,
             "-r", str(SAMPLE_RATE), soundfont, midi_path],
            check=False, capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0 or not os.path.isfile(wav_path):
            raise WavUnavailable(f"fluidsynth failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
        with open(wav_path, "rb") as f:
            return f.read()


def to_png_bytes(melody: Melody, title: str | None = None) -> bytes:
    """A piano roll: a box per note, bar lines dark and beats faint, pitch names spelled for the key."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pitches = [n.pitch for n in melody.notes] or [60]
    low, high = min(pitches) - 1, max(pitches) + 1
    bar, bars = melody.bar_ticks, max(melody.n_bars, 1)
    fig = Figure(figsize=(min(24.0, 3.0 + 0.9 * bars), 1.5 + 0.16 * (high - low + 1)), dpi=100)
    FigureCanvasAgg(fig)  # a canvas of its own: nothing touches pyplot's global state
    ax = fig.add_subplot()
    ax.barh([n.pitch for n in melody.notes], [n.duration / bar for n in melody.notes], height=0.8,
            left=[n.onset / bar for n in melody.notes], color="tab:blue", edgecolor="navy", linewidth=0.6)
    beat = TICKS_PER_BEAT * 4 // melody.time_signature[1]
    for tick in range(0, bars * bar + 1, beat):
        ax.axvline(tick / bar, color="0.35" if tick % bar == 0 else "0.88", linewidth=0.9 if tick % bar == 0 else 0.5,
                   zorder=0)
    ax.set_xlim(0, bars)
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_xticks([b + 0.5 for b in range(bars)], [str(b + 1) for b in range(bars)], fontsize=7)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks(range(low, high + 1), [note_name(p, melody.key) for p in range(low, high + 1)], fontsize=7)
    ax.set_xlabel("bar")
    n, d = melody.time_signature
    heading = title or melody.meta.get("title")
    ax.set_title(f"{heading + ' — ' if heading else ''}{melody.key}, {n}/{d}, ♩ = {round(melody.tempo)}", fontsize=10)
    ax.grid(axis="y", color="0.93", linewidth=0.5)
    ax.set_axisbelow(True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------ dispatch


def to_bytes(melody: Melody, fmt: str, title: str | None = None, metadata: dict | None = None) -> bytes:
    """The file contents of ``melody`` in one of :data:`FORMATS`."""
    if fmt == "mid":
        return to_midi_bytes(melody, title or "melody")
    if fmt == "abc":
        return to_abc_text(melody, title).encode()
    if fmt == "musicxml":
        return to_musicxml_bytes(melody, title)
    if fmt == "json":
        return (json.dumps(to_json_dict(melody, **(metadata or {})), indent=2, default=str) + "\n").encode()
    if fmt == "wav":
        return to_wav_bytes(melody)
    if fmt == "png":
        return to_png_bytes(melody, title)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_outputs(
    melody: Melody,
    out_dir_uri: str,
    stem: str,
    formats: Iterable[str],
    title: str | None = None,
    metadata: dict | None = None,
) -> dict[str, str]:
    """Write ``<out_dir_uri>/<stem>.<format>`` for each format (local or s3://); returns format -> URI.

    WAV is skipped with a warning where fluidsynth or a soundfont is missing
    (or fails), so one missing program never costs the other files.
    """
    written = {}
    for fmt in formats:
        try:
            data = to_bytes(melody, fmt, title, metadata)
        except WavUnavailable as exc:
            log.warning("skipping %s.wav: %s", stem, exc)
            continue
        uri = storage.join(out_dir_uri, f"{stem}.{fmt}")
        storage.write_bytes(uri, data)
        written[fmt] = uri
    return written
