"""What ``musicgen generate`` does, apart from parsing flags: read a primer, sample, write the files."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from musicgen import storage
from musicgen.config import DEFAULT_SECTION_BARS
from musicgen.music.export import write_outputs
from musicgen.music.form import FormMix
from musicgen.music.formats import INPUT_SUFFIXES, MIDI_SUFFIXES
from musicgen.music.melody import Melody, parse_key
from musicgen.music.midi import read_midi
from musicgen.music.notation import read_notation
from musicgen.sampling.form import is_auto, shape_fields
from musicgen.sampling.generator import MelodyGenerator
from musicgen.sampling.provenance import CLI_FIELDS, provenance
from musicgen.sampling.sampler import SampleRequest

PRIMER_SUFFIXES = INPUT_SUFFIXES
BATCH_SIZE = 32  # melodies sampled in one loop: bounds memory for a large --n


@dataclass(frozen=True)
class GeneratedFile:
    """One generated melody and the files written for it (format -> URI)."""

    stem: str
    melody: Melody
    files: dict[str, str]


def read_primer(uri: str) -> Melody:
    """The melody to continue: a MIDI file's melodic track, or the first tune of a notation file."""
    suffix = posixpath.splitext(uri)[1].lower()
    if suffix not in PRIMER_SUFFIXES:
        raise ValueError(f"cannot read primer {uri}: use one of {', '.join(PRIMER_SUFFIXES)}")
    data = storage.read_bytes(uri)
    try:
        return read_midi(data) if suffix in MIDI_SUFFIXES else read_notation(data, suffix)[0]
    except ValueError as exc:  # UnusableInput says what is wrong with the file
        raise ValueError(f"cannot read primer {uri}: {exc}") from exc


def make_requests(
    style: str,
    n: int,
    seed: int,
    *,
    primer: Melody | None = None,
    time_signature: tuple[int, int] | None = None,
    key: str | None = None,
    bars: int | None = None,
    form: str | None = None,
    section_bars: int = DEFAULT_SECTION_BARS,
    form_mix: FormMix | None = None,
    **settings,
) -> list[SampleRequest]:
    """``n`` requests; melody ``i`` gets seed ``seed + i``. A primer brings its own meter; a form sets
    the length (its sections times ``section_bars``) unless ``bars`` is given too; ``form="auto"``
    draws each melody's form from the style's ``form_mix`` (``ArtifactMeta.form_mix``)."""
    if n < 1:
        raise ValueError("--n must be at least 1")
    if is_auto(form) and bars is not None:
        raise ValueError("--form auto chooses the length from the form it draws: leave out --bars")
    if form is None and settings.get("variation"):
        raise ValueError("--variation varies the returning sections of a --form: give a form too")
    if key:
        try:
            parse_key(key)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"unknown key {key!r}: give a tonic and a mode, e.g. 'D minor' or 'Bb major'") from exc
    if primer is not None:
        if time_signature and tuple(time_signature) != primer.time_signature:
            meter = "/".join(map(str, primer.time_signature))
            raise ValueError(f"the primer is in {meter}; leave out --time-signature or make them agree")
        time_signature = primer.time_signature
    variation = settings.pop("variation", 0.0)
    return [SampleRequest(style, seed + i, time_signature=time_signature, key=key, primer=primer, **settings,
                          **shape_fields(form, section_bars, variation, bars, seed + i, form_mix or FormMix()))
            for i in range(n)]


def stem_of(request: SampleRequest) -> str:
    """File name without suffix: style and seed are what it takes to make the melody again."""
    return f"{request.style}-{request.seed}"


def generate_files(
    generator: MelodyGenerator,
    requests: Sequence[SampleRequest],
    out_dir: str,
    formats: Sequence[str],
) -> list[GeneratedFile]:
    """Sample ``requests`` in batches and write each melody as ``<out_dir>/<style>-<seed>.<format>``.

    The JSON file records the model and every sampling setting, so a melody can be made again.
    """
    out = []
    for start in range(0, len(requests), BATCH_SIZE):
        for generated in generator.generate(list(requests[start : start + BATCH_SIZE])):
            r, stem = generated.request, stem_of(generated.request)
            metadata = provenance(generator, r).subset(CLI_FIELDS)
            files = write_outputs(generated.melody, out_dir, stem, formats, title=f"{r.style} {r.seed}",
                                  metadata=metadata)
            out.append(GeneratedFile(stem, generated.melody, files))
    return out


def format_table(generated: Sequence[GeneratedFile]) -> str:
    """One line per melody: file stem, key, meter, bars and notes, and the form where any has one
    (what ``--form auto`` drew: ``AABB x 8`` bars)."""
    width = max([len("file"), *(len(g.stem) for g in generated)]) + 2
    forms = any(g.melody.meta.get("form") for g in generated)
    lines = [f"{'file':<{width}}{'key':<11}{'meter':>6}{'bars':>6}{'notes':>7}" + ("  form" if forms else "")]
    for g in generated:
        n, d = g.melody.time_signature
        form = g.melody.meta.get("form")
        shape = f"  {form} x {g.melody.n_bars // len(form)}" if form else "  -"
        lines.append(f"{g.stem:<{width}}{g.melody.key:<11}{f'{n}/{d}':>6}{g.melody.n_bars:>6}{len(g.melody.notes):>7}"
                     + (shape if forms else ""))
    return "\n".join(lines)
