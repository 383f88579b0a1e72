"""``musicgen generate``: sample melodies from a model and write them as files (its flags and their
run; what it does apart from flags is ``musicgen.sampling.cli_generate``). The help of the sampling
flags lives here too: ``serve``, ``bulk`` and ``evaluate`` take the same ones."""

from __future__ import annotations

import argparse

from musicgen.config import DEFAULT_BARS, DEFAULT_SECTION_BARS, DEFAULT_TOP_P, PRECISIONS
from musicgen.pretrained import PRETRAINED

GUIDANCE_HELP = ("classifier-free guidance weight: above 1 melodies are more clearly of their style; needs a model "
                 "trained with style dropout (default: 2 for such models, else 1 = none)")
PRECISION_HELP = ("weights to sample with: fp32; bf16 or int8 (LSTM and GAN models on CPU; int8 kept validation "
                  "bits/token within 0.02%% of fp32); or auto: the fastest on this CPU, timed when the model loads "
                  "and remembered per CPU model (default: auto)")
MODEL_HELP = ("model artifact folder, local or s3:// (the <storage>/<name>/model folder `musicgen train` writes); "
              "default: 'pretrained', the LSTM that ships with musicgen (see musicgen/pretrained/)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="sample melodies in a style from a trained model and write them as files",
        description=(
            "Sample --n melodies in --style from a model artifact (the <storage>/<name>/model folder `musicgen "
            "train` writes) and write each as <out>/<style>-<seed>.<format>; melody i uses seed --seed + i, so "
            "a rerun with the same settings writes the same files, and a seed makes the same melody whatever --n "
            "(on one machine, where --precision auto chose the same precision). With --primer the melodies "
            "continue that file's melody (it counts towards --bars). Formats: mid, abc, musicxml, json (notes and the "
            "settings that made them), wav (needs fluidsynth and a General MIDI soundfont, found in the usual "
            "places or at $MUSICGEN_SOUNDFONT; skipped with a warning otherwise) and png (a piano roll)."
        ),
    )
    p.add_argument("--model", default=PRETRAINED, help=MODEL_HELP)
    p.add_argument("--style", required=True, help="a style the model was trained on (a wrong one lists them)")
    p.add_argument("--n", type=int, default=1, help="number of melodies (default: 1)")
    p.add_argument("--out", required=True, help="output folder, local or s3://")
    p.add_argument("--bars", type=int, help=f"length in bars, primer included, 1..64 (default: {DEFAULT_BARS}; "
                   "with --form, its sections times --section-bars)")
    p.add_argument("--form", help="sections as letters, up to 8, e.g. AABB or ABAC: a letter that returns repeats its "
                   "first section, a new letter brings new material; the tune ends on the tonic, and a pickup bar, "
                   "where the model opens with one, comes ahead of whole sections. 'auto': each melody "
                   "draws a form and section length from those of the style's training melodies (default: none)")
    p.add_argument("--section-bars", type=int, default=DEFAULT_SECTION_BARS,
                   help=f"bars per section of --form (default: {DEFAULT_SECTION_BARS})")
    p.add_argument("--variation", type=float, default=0.0, help="share of a returning section's last bars sampled "
                   "anew, 0..1, e.g. 0.125 of 8 bars: a second ending (default: 0, exact repeats)")
    p.add_argument("--loop", action="store_true", help="a seamless loop for games: the end leads back into the start "
                   "(no final cadence); MIDI marks loopStart/loopEnd, WAV is cut to loop exactly")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature; lower is safer, 0 is greedy (default: 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens; 0 = off (default: 0)")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P,
                   help=f"sample among the likeliest tokens holding this much probability; 1 = off "
                        f"(default: {DEFAULT_TOP_P})")
    p.add_argument("--guidance", type=float, help=GUIDANCE_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the first melody (default: 0)")
    p.add_argument("--key", help="transpose each melody into this key, e.g. 'D minor' (default: the model's own)")
    p.add_argument("--tempo", type=float, help="quarter notes per minute (default: the style's own)")
    p.add_argument("--program", type=int, help="General MIDI instrument 0-127 (default: the style's own, e.g. "
                   "fiddle for irish_folk, church organ for bach_chorale)")
    p.add_argument("--time-signature", help="meter, e.g. 6/8 (default: the model chooses; a primer sets its own)")
    p.add_argument("--primer", help="a .mid/.midi or .abc/.xml/.musicxml/.mxl/.krn file whose melody to continue")
    p.add_argument("--format", default="mid,abc,json",
                   help="comma-separated formats out of mid,abc,musicxml,json,wav,png, or all (default: mid,abc,json)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also print the sampling precision and, for auto, the timings it was chosen by")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from musicgen import storage
    from musicgen.music.export import parse_formats
    from musicgen.sampling import MelodyGenerator
    from musicgen.sampling.cli_generate import (
        BATCH_SIZE,
        format_table,
        generate_files,
        make_requests,
        read_primer,
    )
    from musicgen.tokenizers.events import parse_time_signature

    formats = parse_formats(args.format)
    time_signature = parse_time_signature(args.time_signature) if args.time_signature else None
    primer = read_primer(args.primer) if args.primer else None
    # precision timed at the same batch sizes whatever --n is: the same seed samples in the same precision,
    # so `--seed 4 --n 1` writes again the file that `--seed 0 --n 8` wrote for seed 4
    generator = MelodyGenerator.from_artifact(args.model, device=args.device, precision=args.precision,
                                              batch_sizes=(1, BATCH_SIZE))
    if args.verbose:
        print(generator.precision_choice.describe())
    generator.check_styles([args.style])
    requests = make_requests(
        args.style, args.n, args.seed, primer=primer, time_signature=time_signature, key=args.key, bars=args.bars,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, tempo=args.tempo, program=args.program,
        guidance=args.guidance, form=args.form, section_bars=args.section_bars, variation=args.variation,
        loop=args.loop, form_mix=generator.meta.form_mix(args.style),
    )
    generated = generate_files(generator, requests, args.out, formats)
    print(format_table(generated))
    print(f"{sum(len(g.files) for g in generated)} files written to {storage.absolute(args.out)}")
    return 0
