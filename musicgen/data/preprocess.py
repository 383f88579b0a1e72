"""The Ray Data preprocessing job: music files -> Parquet token shards.

Pipeline (one pass over the files, then one over the melodies):

1. list the input files on the driver (local folder or ``s3://bucket/prefix``)
   and decide each file's style (its folder name, or a CSV);
2. ``map_batches(parse_files)`` over the path list, in parallel tasks:
   read and parse each file and pick its melodic track, then quantise,
   tokenize and fingerprint the batch's melodies together (``MelodyBatch``).
   Every failure becomes an error row, so a corrupt file never fails a block,
   let alone the job;
3. on the driver, from small columns only: drop exact duplicates and assign
   train/val/test by source piece, grouping pieces that share an opening so
   no tune (and, since transposition happens at training time, no
   transposition of it) lands in two splits (the rule is ``data/splits.py``'s);
4. write zstd Parquet shards partitioned by split (a plain Ray task per few blocks), plus ``vocab.json``,
   ``stats.json`` and ``errors.parquet`` (the layout is ``data/shards.py``'s).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import posixpath
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from musicgen import storage
from musicgen.config import MAX_BARS, PreprocessConfig
from musicgen.data import shards
from musicgen.data.shards import ERRORS_SCHEMA, SPLITS
from musicgen.data.splits import assign_splits, piece_of
from musicgen.music.form import FormMix, form_and_copies, format_copies, parse_copies, whole_bars
from musicgen.music.formats import INPUT_SUFFIXES, MIDI_SUFFIXES, NOTATION_SUFFIXES
from musicgen.music.melody import Melody, MelodyBatch, RawMelody, interval_fingerprints_many, quantise_many
from musicgen.music.midi import UnusableInput, parse_midi
from musicgen.runtime import require
from musicgen.tokenizers import make_tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = INPUT_SUFFIXES


PARSED_SCHEMA = pa.schema(  # the shard columns, then those the job needs on the driver only
    [
        *shards.SHARD_SCHEMA,
        ("fingerprint", pa.string()),
        ("head_fingerprint", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("form", pa.string()),  # ``form_label``: counted per style in stats.json
        ("copies", pa.string()),  # its ``repeated_bars`` as ``format_copies`` writes them: sampled per form
        ("whole_bars", pa.int32()),  # its bars after a pickup: sampled with its copies
    ]
)
INTERNAL_COLUMNS = ("fingerprint", "head_fingerprint", "error_kind", "error_message", "form", "copies", "whole_bars")


def melodies_from_file(data: bytes, path: str, failed_tunes: list[UnusableInput]) -> list[RawMelody | Melody]:
    """All melodies in one file: one per MIDI/MusicXML/kern file, one per tune of an ABC file.
    MIDI comes back as parsed (the caller quantises a whole batch at once), notation quantised.
    Tunes of an ABC file that fail on their own are appended to ``failed_tunes``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in MIDI_SUFFIXES:
        return [parse_midi(data)]
    if suffix in NOTATION_SUFFIXES:
        from musicgen.music.notation import read_notation  # music21 is slow to import

        return read_notation(data, suffix, errors=failed_tunes)
    raise UnusableInput("unsupported_format", f"unsupported file type {suffix!r}")


@functools.lru_cache(maxsize=4)
def _tokenizer_cached(config_json: str):
    return tokenizer_from_dict(json.loads(config_json))


def _tokenizer(config: dict):
    """One tokenizer per worker process and config, not one per batch."""
    return _tokenizer_cached(json.dumps(config, sort_keys=True))


def _error_table(errors: list[tuple[str, str, str]]) -> pa.Table:
    """Rows of PARSED_SCHEMA for (source_uri, error kind, message) triples."""
    columns = {field.name: pa.nulls(len(errors), field.type) for field in PARSED_SCHEMA}
    if errors:
        uris, kinds, messages = zip(*errors)
        columns.update(
            source_uri=pa.array(uris, pa.string()),
            error_kind=pa.array(kinds, pa.string()),
            error_message=pa.array([m[:500] for m in messages], pa.string()),
        )
    return pa.table(columns, schema=PARSED_SCHEMA)


def _read_all(filesystem: pafs.FileSystem, paths: list[str]) -> list[bytes | Exception]:
    """Bytes of each file, or the exception that reading it raised. Object stores are read with
    a few threads, since each GET spends its time waiting."""

    def read(path: str) -> bytes | Exception:
        try:
            with filesystem.open_input_stream(path) as stream:
                return stream.read()
        except Exception as exc:  # a missing or unreadable file is one error row, not a failed batch
            return exc

    if isinstance(filesystem, pafs.LocalFileSystem) or len(paths) < 2:
        return [read(p) for p in paths]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(read, paths))


def parse_files(
    batch: pa.Table,
    *,
    filesystem: pafs.FileSystem,
    tokenizer_config: dict,
    file_info: dict[str, tuple[str, str]],
    uri_prefix: str,
    min_notes: int,
    head_notes: int,
) -> pa.Table:
    """Ray Data UDF: a batch of file paths -> one row per melody or per failure.

    Files are parsed one by one; quantising, tokenizing and fingerprinting then
    run once over all the batch's melodies (``MelodyBatch``)."""
    tokenizer = _tokenizer(tokenizer_config)
    errors: list[tuple[str, str, str]] = []
    found: list[tuple[RawMelody | Melody, str, str, str]] = []  # (melody, source_uri, style, piece id)
    paths = batch.column("path").to_pylist()
    for data, path in zip(_read_all(filesystem, paths), paths):
        source_uri = uri_prefix + path
        style, piece = file_info[path]
        failed_tunes: list[UnusableInput] = []
        try:
            if isinstance(data, Exception):
                raise UnusableInput("unreadable", f"{type(data).__name__}: {data}")
            if not data:
                raise UnusableInput("empty_file", "the file is empty")
            melodies = melodies_from_file(data, path, failed_tunes)
            if not melodies:
                raise UnusableInput("no_melody", "no melody found")
            errors += [(f"{source_uri}#X{e.x}", e.kind, str(e)) for e in failed_tunes]
        except UnusableInput as exc:
            errors.append((source_uri, exc.kind, str(exc)))
            continue
        except Exception as exc:  # a parser bug on one file must not end the job
            errors.append((source_uri, "parse_error", f"{type(exc).__name__}: {exc}"))
            continue
        if len(melodies) == 1:
            found.append((melodies[0], source_uri, style, piece))
        else:
            found += [(m, f"{source_uri}#{i}", style, f"{piece}#{i}") for i, m in enumerate(melodies)]
    # MIDI melodies are quantised here, all at once; notation arrives quantised
    raw = [f for f in found if isinstance(f[0], RawMelody)]
    notated = [f for f in found if isinstance(f[0], Melody)]
    melodies = MelodyBatch.concat(
        [quantise_many([f[0] for f in raw]), MelodyBatch.from_melodies([f[0] for f in notated])]
    )
    found = raw + notated
    _, where, styles, pieces = zip(*found) if found else ((), (), (), ())
    values, offsets, token_errors = tokenizer.encode_many(melodies, styles)
    fingerprints, head_fingerprints = interval_fingerprints_many(melodies, head_notes)
    n_notes = melodies.n_notes
    usable = []
    for i, (n, token_error) in enumerate(zip(n_notes.tolist(), token_errors)):
        if n < min_notes:
            errors.append((where[i], "too_short", f"{n} notes < {min_notes}"))
        elif token_error:
            errors.append((where[i], "untokenizable", token_error))
        else:
            usable.append(i)

    def pick(values: Sequence) -> list:
        return [values[i] for i in usable]

    tokens = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int16()))
    tunes = [melodies.melody(i) for i in usable]
    shapes = [form_and_copies(tune, MAX_BARS) for tune in tunes]
    rows = pa.table(
        {
            "melody_id": [hashlib.blake2b(w.encode(), digest_size=8).hexdigest() for w in pick(where)],
            "style": pick(styles),
            "source_uri": pick(where),
            "piece_id": pick(pieces),
            "title": [melodies.metas[i].get("title") for i in usable],
            "tokens": tokens.take(np.array(usable, dtype=np.int64)),
            "n_tokens": np.diff(offsets)[usable],
            "n_notes": n_notes[usable],
            "n_bars": melodies.n_bars[usable],
            "key": pick(melodies.keys),
            "time_signature": ["{}/{}".format(*melodies.time_signatures[i]) for i in usable],
            "tempo": pick(melodies.tempos),
            "sections": [list(melodies.sections[i]) if melodies.sections is not None else [] for i in usable],
            "fingerprint": pick(fingerprints),
            "head_fingerprint": pick(head_fingerprints),
            "error_kind": pa.nulls(len(usable), pa.string()),
            "error_message": pa.nulls(len(usable), pa.string()),
            "form": [form for form, _ in shapes],
            "copies": [format_copies(copies) for _, copies in shapes],
            "whole_bars": [whole_bars(tune) for tune in tunes],
        },
        schema=PARSED_SCHEMA,
    )
    return pa.concat_tables([rows, _error_table(errors)])


def _file_styles(config: PreprocessConfig) -> dict[str, dict[str, tuple[str, str]]]:
    """For each input URI, {path inside its filesystem: (style, piece id)}."""
    table = None
    if config.style_from != "dirname":
        table = pacsv.read_csv(pa.BufferReader(storage.read_bytes(config.style_from))).to_pylist()
        csv_fs, csv_path = storage.resolve(config.style_from)
        csv_dir = posixpath.dirname(csv_path)
    out = {}
    for uri in config.inputs:
        files = storage.list_files(uri, SUPPORTED_SUFFIXES)
        if table is None:
            out[uri] = {p: (posixpath.basename(posixpath.dirname(p)), piece_of(p)) for p in files}
            continue
        by_path = {
            posixpath.normpath(posixpath.join(csv_dir, r["path"])): (
                r["style"],
                r.get("work") or piece_of(posixpath.join(csv_dir, r["path"])),
            )
            for r in table
        }
        out[uri] = {p: by_path[p] for p in files if p in by_path}
        if len(out[uri]) < len(files):
            log.warning("%d files under %s are not in %s and are skipped",
                        len(files) - len(out[uri]), uri, config.style_from)
    return out


def write_shard(splits: dict[str, str], filesystem: pafs.FileSystem, path: str, name: str, *blocks: pa.Table) -> None:
    """Ray task: the kept melodies of a few parsed blocks, without internal columns, as one zstd
    Parquet file per split under ``<path>/split=<split>/``."""
    rows = pa.concat_tables(blocks).drop_columns(list(INTERNAL_COLUMNS))
    # null for error rows and dropped duplicates, which the filters below then leave out
    split_column = pa.array([splits.get(m) for m in rows.column("melody_id").to_pylist()], pa.string())
    for split in SPLITS:
        part = rows.filter(pc.equal(split_column, split))
        if part.num_rows:
            shards.write_split_part(part, filesystem, path, split, name)


def _import_parsers() -> None:
    import ray.data  # noqa: F401  (what a map task needs before its first batch)
    import symusic  # noqa: F401


def run_preprocess(config: PreprocessConfig) -> dict:
    """Run the job on the current Ray cluster; returns the stats also written to stats.json."""
    import ray

    require({"CPU": 1}, "preprocessing (Ray Data tasks of one CPU each)")  # a cluster of no CPUs runs none, ever
    started = time.perf_counter()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # A job's workers start on its first task and then import Ray Data, pyarrow and the parsers
    # (~2 s here). Starting them now overlaps that with listing the corpus on the driver.
    warm_up = ray.remote(_import_parsers).options(num_cpus=1)
    for _ in range(cpus):
        warm_up.remote()
    inputs = _file_styles(config)
    n_files = sum(len(files) for files in inputs.values())
    if n_files == 0:
        raise FileNotFoundError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files under {', '.join(config.inputs)}")
    styles = sorted({style for files in inputs.values() for style, _ in files.values()})
    tokenizer = make_tokenizer(config.tokenizer, styles)

    # Ray Data holds back part of a small cluster for each operator by default; on a
    # couple of CPUs that leaves the parsing stage running one task at a time.
    context = ray.data.DataContext.get_current()
    reservation = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        return _run(config, inputs, n_files, tokenizer, cpus, started)
    finally:
        context.op_resource_reservation_enabled = reservation


def _run(config: PreprocessConfig, inputs, n_files: int, tokenizer, cpus: int, started: float) -> dict:
    import ray

    parsed = None
    for uri, files in inputs.items():
        fs, _ = storage.resolve(uri)
        # The dataset starts from the list of paths and each task reads its own files: for
        # corpora of many small files this is several times faster than read_binary_files,
        # which spends about half a millisecond of bookkeeping on every file. from_items
        # builds the path blocks on the driver (from_arrow runs a task per block for metadata).
        paths = sorted(files)
        ds = ray.data.from_items(
            [{"path": p} for p in paths], override_num_blocks=min(len(paths), max(4 * cpus, len(paths) // 1000))
        ).map_batches(
            parse_files,
            batch_format="pyarrow",
            batch_size=config.files_per_batch,
            fn_kwargs={
                "filesystem": fs,
                "tokenizer_config": tokenizer.to_dict(),
                "file_info": files,
                "uri_prefix": "s3://" if storage.is_s3(uri) else "",
                "min_notes": config.min_notes,
                "head_notes": config.head_notes,
            },
        )
        parsed = ds if parsed is None else parsed.union(ds)
    parsed = parsed.materialize()
    log.info("parsed %d files in %.1f s", n_files, time.perf_counter() - started)

    index_columns = ["melody_id", "style", "piece_id", "source_uri", "n_tokens", "fingerprint", "head_fingerprint",
                     "error_kind", "error_message", "form", "copies", "whole_bars"]
    refs = parsed.to_arrow_refs()
    blocks = ray.get(refs)  # zero-copy
    index = pa.concat_tables([block.select(index_columns) for block in blocks])
    failed = index.column("error_kind").is_valid()
    errors = index.filter(failed)
    melodies = index.filter(pc.invert(failed))
    splits, duplicates = assign_splits(melodies, config.val_fraction, config.test_fraction)

    melodies_uri = shards.melodies_uri(config.output)
    storage.delete_dir(melodies_uri)  # a rerun replaces the shards, never appends to them
    out_fs, out_path = storage.resolve(melodies_uri)
    if splits:
        # One plain task per few blocks: a second Ray Data execution (map_batches + write_parquet)
        # did the same in 0.9-1.3 s against 0.3-0.5 s, a fixed cost every job paid.
        write = ray.remote(write_shard).options(num_cpus=1)
        splits_ref = ray.put(splits)
        pending, shard, rows = [], [], 0
        for i, (ref, block) in enumerate(zip(refs, blocks)):
            shard.append(ref)
            rows += block.num_rows
            if rows >= config.rows_per_shard or i == len(refs) - 1:
                pending.append(write.remote(splits_ref, out_fs, out_path, f"part-{len(pending):05d}", *shard))
                shard, rows = [], 0
        ray.get(pending)

    log.info("wrote the shards after %.1f s", time.perf_counter() - started)
    error_table = pa.table(
        {
            "source_uri": errors.column("source_uri"),
            "error_kind": errors.column("error_kind"),
            "message": errors.column("error_message"),
        },
        schema=ERRORS_SCHEMA,
    )
    shards.write_errors(config.output, error_table)
    shards.write_vocab(config.output, tokenizer.to_dict())

    stats = _stats(config, melodies, splits, duplicates, errors, n_files, time.perf_counter() - started)
    shards.write_stats(config.output, stats)
    return stats


def _stats(config, melodies: pa.Table, splits, duplicates, errors: pa.Table, n_files: int, seconds: float) -> dict:
    per_style: dict[str, dict] = {}
    shapes: dict[str, list] = {}
    names = ("melody_id", "style", "n_tokens", "form", "copies", "whole_bars")
    columns = [melodies.column(c).to_pylist() for c in names]
    for melody_id, style, n_tokens, form, copies, bars in sorted(zip(*columns)):  # by id: the same copies on a rerun
        if melody_id not in splits:
            continue
        entry = per_style.setdefault(style, {"melodies": dict.fromkeys(SPLITS, 0), "tokens": dict.fromkeys(SPLITS, 0)})
        entry["melodies"][splits[melody_id]] += 1
        entry["tokens"][splits[melody_id]] += n_tokens
        shapes.setdefault(style, []).append((form, parse_copies(copies), bars))
    for style, entry in per_style.items():  # the style's form mix (what --form auto draws from)
        entry.update(FormMix.tally(shapes[style]).to_stats())
    failed_files = {uri.split("#", 1)[0] for uri in errors.column("source_uri").to_pylist()}
    return {
        "config": asdict(config),
        "files_read": n_files,
        "files_failed": len(failed_files - {u.split("#", 1)[0] for u in melodies.column("source_uri").to_pylist()}),
        "errors": dict(Counter(errors.column("error_kind").to_pylist())),
        "melodies": len(splits),
        "duplicates_dropped": len(duplicates),
        "tokens": sum(sum(s["tokens"].values()) for s in per_style.values()),
        "per_style": per_style,
        "wall_seconds": round(seconds, 2),
        "files_per_second": round(n_files / seconds, 1) if seconds else None,
    }
