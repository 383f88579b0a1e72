"""The bulk job's writes: accepted melodies' files in threads (``<id>.json`` last, so its presence means
complete), the files a killed run left behind, and Parquet tables."""

from __future__ import annotations

import io
import os
import posixpath
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from musicgen import storage


class Writer:
    """Writes accepted melodies in threads: data files first, ``<id>.json`` last."""

    def __init__(self, out: str, threads: int, complete: set[str], kill_after: int | None = None):
        self.out, self.complete, self.kill_after = out, complete, kill_after
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catalog-writer")
        self.futures: list[Future] = []
        self.written, self.lock = 0, threading.Lock()

    def submit(self, record: dict, files: dict[str, bytes]) -> None:
        if record["id"] not in self.complete:  # written in full by an earlier run
            self.futures.append(self.pool.submit(self._write, record, files))

    def _write(self, record: dict, files: dict[str, bytes]) -> None:
        for fmt, data in files.items():
            storage.write_bytes(storage.join(self.out, *record[f"{fmt}_path"].split("/")), data)
        with self.lock:
            self.written += 1
            if self.kill_after is not None and self.written > self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # chaos testing: this melody stays partial
        storage.write_json(storage.join(self.out, record["style"], f"{record['id']}.json"), record)

    def flush(self) -> None:
        futures, self.futures = self.futures, []
        for f in futures:
            f.result()

    def close(self) -> None:
        self.flush()
        self.pool.shutdown()


def complete_ids(out: str, styles) -> set[str]:
    """Ids whose ``<id>.json`` exists: written in full by an earlier run."""
    ids = set()
    for style in styles:
        folder = storage.join(out, style)
        if storage.exists(folder):
            ids |= {posixpath.basename(p)[: -len(".json")] for p in storage.list_files(folder, [".json"])}
    return ids


def remove_strays(out: str, records: list[dict], styles) -> int:
    """Delete files in the style folders that belong to no catalog melody: partial writes of a killed
    run (temporary files, melodies a crash left without their record). Returns how many."""
    fs, root = storage.resolve(out)
    keep = {posixpath.join(root, r[k]) for r in records for k in r if k.endswith("_path")}
    keep |= {posixpath.join(root, r["style"], f"{r['id']}.json") for r in records}
    removed = 0
    for style in styles:
        folder = storage.join(out, style)
        if storage.exists(folder):
            for path in storage.list_files(folder):
                if path not in keep:
                    fs.delete_file(path)
                    removed += 1
    return removed


def write_parquet(uri: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(uri, sink.getvalue())
