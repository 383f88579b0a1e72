"""Storage addressed by URI: local paths, ``file://`` and ``s3://``.

This is the only module that knows about S3. It returns pyarrow filesystems,
which Ray Data, Ray Train and pyarrow.parquet all take directly. S3-compatible
stores (MinIO, moto, Ceph) work through the usual AWS variables:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (pyarrow ignores these, so we
read them here), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN`` and ``AWS_REGION``/``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_filesystem(endpoint_url: str | None = None) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem honouring the AWS environment variables and an endpoint override."""
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Split a URI into (filesystem, path inside it). Local paths become absolute."""
    if is_s3(uri):
        return s3_filesystem(), uri[len("s3://") :].rstrip("/")
    return pafs.LocalFileSystem(), _local_path(uri)


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        raise ValueError(f"unsupported storage URI {uri!r}: use a local path, file:// or s3://")
    return os.path.abspath(os.path.expanduser(uri))


def absolute(uri: str) -> str:
    """The same location with a local path made absolute: what to hand to processes with
    another working directory (Ray workers run in their own)."""
    if is_s3(uri) or uri.startswith("file://"):
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    if is_s3(uri) or uri.startswith("file://"):
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object. S3 puts are atomic by nature; a local file goes to a temporary name
    first and is renamed, so a reader never sees half a file. Local writes use plain file calls
    (a pyarrow output stream costs twice the CPU), and create the folder only when the first
    open finds it missing: the bulk job's driver writes three files a melody, and every
    system call of theirs is CPU taken from the sampling actors."""
    if is_s3(uri):
        fs, path = resolve(uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    path = _local_path(uri)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        file = open(temporary, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        file = open(temporary, "wb")
    with file:
        file.write(data)
    os.replace(temporary, path)


def read_json(uri: str):
    return json.loads(read_bytes(uri))


def write_json(uri: str, value) -> None:
    write_bytes(uri, json.dumps(value, indent=2, sort_keys=True).encode())


def delete_dir(uri: str) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def list_files(uri: str, suffixes: Iterable[str] | None = None) -> list[str]:
    """Every file below ``uri`` (recursively), as paths inside its filesystem, sorted."""
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such file or folder: {uri}")
    if info.type == pafs.FileType.File:
        found = [info]
    else:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    return sorted(
        f.path
        for f in found
        if f.type == pafs.FileType.File and (wanted is None or f.path.lower().endswith(wanted))
    )
