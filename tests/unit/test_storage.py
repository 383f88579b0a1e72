"""The storage layer on local paths (S3 runs against a loopback server in the integration tests)."""

import os

import pytest

from musicgen import storage


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_write_bytes_creates_folders_replaces_whole_files_and_leaves_no_temporaries(tmp_path, scheme):
    uri = f"{scheme}{tmp_path}/catalog/style/melody.mid"
    storage.write_bytes(uri, b"first version")
    storage.write_bytes(uri, b"second")
    assert storage.read_bytes(uri) == b"second"
    assert os.listdir(tmp_path / "catalog" / "style") == ["melody.mid"]
    storage.write_json(storage.join(f"{scheme}{tmp_path}", "a", "b.json"), {"x": [1, 2]})
    assert storage.read_json(f"{tmp_path}/a/b.json") == {"x": [1, 2]}


def test_a_failed_local_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "melody.abc"
    storage.write_bytes(str(path), b"X:1\nK:C\nCDEF|]")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(str(path), b"half a tune")
    assert path.read_bytes() == b"X:1\nK:C\nCDEF|]"


def test_unsupported_schemes_are_refused():
    with pytest.raises(ValueError, match="unsupported storage URI"):
        storage.write_bytes("gs://bucket/x", b"")
