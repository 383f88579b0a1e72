"""Copy a trained model artifact into the package as the shipped model (``musicgen/pretrained/``).

    python tools/ship_pretrained.py --artifact RUNS/melody-lstm/model --data SHARDS
    python tools/ship_pretrained.py --add-style-classifier   # to the model shipped now; weights untouched
    python tools/ship_pretrained.py --refresh-stats --data SHARDS   # the same, for the shards' stats

Writes ``musicgen/pretrained/melody-lstm/``: the artifact (``weights.pt``, ``model.json`` with the
training machine's paths replaced by names), the copy-check reference (every split's melody ids
and tokens, so ``musicgen bulk`` can reject copies of the corpus out of the box), the style
classifier companion (``style_classifier.json``, fitted on the reference's train split as
``musicgen train`` fits it: ``musicgen.models.style_companion``) and ``SHA256SUMS``.
``MODEL_CARD.md`` is written by hand beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from musicgen.data.shards import SPLITS, VOCAB_FILE, read_split, read_stats, split_uri
from musicgen.models import META_FILE, REFERENCE_FOLDER, WEIGHTS_FILE, ArtifactMeta, read_meta
from musicgen.models.style_companion import fit_companion, write_companion
from musicgen.pretrained import SHIPPED, write_checksums

PACKAGE = Path(__file__).resolve().parent.parent / "musicgen" / "pretrained" / SHIPPED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", help="the model folder `musicgen train` wrote")
    parser.add_argument("--data", help="the shards it was trained on")
    parser.add_argument("--out", default=str(PACKAGE))
    parser.add_argument("--add-style-classifier", action="store_true",
                        help="only fit and add the style classifier companion to the model at --out")
    parser.add_argument("--refresh-stats", action="store_true",
                        help="only replace the model's data stats (the styles' form mix) with those of --data, the "
                             "shards it was trained on preprocessed again by a version that records more")
    args = parser.parse_args()
    out = Path(args.out)
    if args.refresh_stats:
        if not args.data:
            parser.error("--refresh-stats needs --data")
        meta = ArtifactMeta.from_json(json.loads((out / META_FILE).read_text()))
        meta = dataclasses.replace(meta, data_stats=shipped_stats(args.data)).validate()
        (out / META_FILE).write_text(json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n")
        write_checksums(out)
        print(f"replaced the data stats of {out / META_FILE} with those of {args.data}")
        return
    if args.add_style_classifier:
        info = add_style_classifier(out)
        write_checksums(out)
        print(f"added {out / info['file']} (fitted on {info['melodies']} of {info['train_melodies']} train "
              f"melodies in {info['seconds']} s)")
        return
    if not (args.artifact and args.data):
        parser.error("--artifact and --data are needed to ship a model")
    card = (out / "MODEL_CARD.md").read_text() if (out / "MODEL_CARD.md").exists() else None
    shutil.rmtree(out, ignore_errors=True)
    (out / REFERENCE_FOLDER).mkdir(parents=True)
    shutil.copyfile(Path(args.artifact) / WEIGHTS_FILE, out / WEIGHTS_FILE)
    meta = read_meta(args.artifact)
    config = dict(meta.train_config or {})
    for key in ("data", "storage", "init_from"):
        if config.get(key):
            config[key] = Path(config[key]).name  # no paths of the machine it was trained on
    config["name"] = SHIPPED  # the shipped model's name whatever its run was called (training["run"] keeps that)
    training = {**meta.training, "run": Path(meta.training["run"]).name}
    meta = dataclasses.replace(meta, train_config=config, training=training,
                               data_stats=shipped_stats(args.data)).validate()
    (out / META_FILE).write_text(json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n")
    shutil.copyfile(Path(args.data) / VOCAB_FILE, out / REFERENCE_FOLDER / VOCAB_FILE)
    for split in SPLITS:  # the shard layout, with only the columns the copy check reads
        folder = Path(split_uri(str(out / REFERENCE_FOLDER), split))
        folder.mkdir(parents=True)
        pq.write_table(read_split(args.data, split, ("melody_id", "style", "tokens")), folder / "part-0.parquet",
                       compression="zstd", compression_level=19)
    add_style_classifier(out)
    if card is not None:
        (out / "MODEL_CARD.md").write_text(card)
    write_checksums(out)
    print(f"shipped {args.artifact} to {out}:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(out)}  {path.stat().st_size / 1e6:.2f} MB")


def shipped_stats(data: str) -> dict:
    """The stats of the shards given (the ones the model was trained on, perhaps preprocessed again since
    by a version that counts more, such as the styles' form mix), with the paths reduced to names."""
    stats = read_stats(data)
    stats["config"] = {k: [Path(x).name for x in v] if k == "inputs" else Path(v).name if k in ("output", "style_from")
                       and v else v for k, v in stats.get("config", {}).items()}
    return stats


def add_style_classifier(out: Path) -> dict:
    """Fit the style classifier on the train split of the shipped reference (the corpus the model learned),
    write it beside the weights (never touched) and declare it in ``model.json`` through ``ArtifactMeta``,
    with how it was fitted in ``training.style_classifier``. ``SHA256SUMS`` is the caller's to rewrite."""
    classifier, info = fit_companion(str(out / REFERENCE_FOLDER))
    if classifier is None:
        raise ValueError(f"{out / REFERENCE_FOLDER}: {info['skipped']}")
    companions = write_companion(str(out), classifier)
    meta = ArtifactMeta.from_json(json.loads((out / META_FILE).read_text()))
    info = {**info, "file": companions["style_classifier"]}
    meta = dataclasses.replace(meta, companions={**meta.companions, **companions},
                               training={**(meta.training or {}), "style_classifier": info}).validate()
    (out / META_FILE).write_text(json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n")
    return info


if __name__ == "__main__":
    main()
