"""The real styles' form, measured on preprocessed shards (repeats expanded at ingest): per style the
forms their written sections make, section lengths, the share of bars that repeat, and how sections
and tunes end. These are the targets of form-aware generation (docs/quality.md, Form).

    python tools/measure_form.py --data artifacts/demo/shards
"""

from __future__ import annotations

import argparse
import platform

from musicgen.evaluation.form import corpus_by_style, form_profile, format_profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="shards written by `musicgen preprocess` (folder or s3:// URI)")
    args = parser.parse_args()
    profiles = [form_profile(style, melodies) for style, melodies in corpus_by_style(args.data).items()]
    print(format_profiles(profiles))
    print(f"\n{args.data}, every split; {platform.node()}")


if __name__ == "__main__":
    main()
