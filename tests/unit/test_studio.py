"""The studio's JSON API over a real catalog folder and a real SQLite file (FastAPI's TestClient)."""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from musicgen.music.export import to_abc_text, to_midi_bytes, wav_available
from musicgen.studio import REVIEWS_FILE, default_database
from musicgen.studio.app import create_app
from musicgen.studio.catalog import Catalog
from musicgen.studio.store import SCHEMA_VERSION, ReviewStore
from tests.conftest import random_melody

STYLES = ("irish_folk", "bach_chorale")


def write_catalog(folder, n_per_style: int = 6, wav: bool = False) -> list[str]:
    """A catalog as `musicgen bulk` lays it out: <style>/<id>.mid/.abc, manifest.parquet."""
    rng = random.Random(7)
    rows = []
    for style in STYLES:
        for seed in range(n_per_style):
            melody_id = hashlib.sha256(f"v:{style}:{seed}".encode()).hexdigest()[:16]
            melody = random_melody(rng, n_notes=12 + seed)
            melody = type(melody)(melody.notes, (4, 4) if seed % 2 else (3, 4), "D minor" if seed % 3 else "G major",
                                  100.0, {"style": style})
            (folder / style).mkdir(parents=True, exist_ok=True)
            (folder / style / f"{melody_id}.mid").write_bytes(to_midi_bytes(melody))
            (folder / style / f"{melody_id}.abc").write_text(to_abc_text(melody, f"{style} {seed}"))
            rows.append({"id": melody_id, "style": style, "seed": seed, "key": melody.key,
                         "time_signature": "{}/{}".format(*melody.time_signature), "tempo": melody.tempo,
                         "bars": melody.n_bars, "n_notes": len(melody.notes), "duration_s": 1.5 * melody.n_bars,
                         "longest_shared_run": seed, "fingerprint": "x", "pitches": [n.pitch for n in melody.notes],
                         "mid_path": f"{style}/{melody_id}.mid", "abc_path": f"{style}/{melody_id}.abc"})
    pq.write_table(pa.Table.from_pylist(rows), folder / "manifest.parquet")
    return [r["id"] for r in rows]


@pytest.fixture
def catalog(tmp_path):
    ids = write_catalog(tmp_path / "catalog")
    return tmp_path / "catalog", ids


def client(folder, monkeypatch=None, token: str | None = None) -> TestClient:
    if monkeypatch is not None:
        if token:
            monkeypatch.setenv("MUSICGEN_API_TOKEN", token)
        else:
            monkeypatch.delenv("MUSICGEN_API_TOKEN", raising=False)
    return TestClient(create_app(Catalog(str(folder)), ReviewStore(default_database(str(folder)))))


def test_list_filters_sorts_and_pages(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    everything = api.get("/api/melodies").json()
    assert everything["total"] == 12 and {m["id"] for m in everything["melodies"]} == set(ids)
    assert "pitches" not in everything["melodies"][0] and everything["melodies"][0]["review"]["version"] == 0
    irish = api.get("/api/melodies",
                    params={"style": "irish_folk", "sort": "longest_shared_run", "order": "desc"}).json()
    assert irish["total"] == 6 and [m["longest_shared_run"] for m in irish["melodies"]] == [5, 4, 3, 2, 1, 0]
    short = api.get("/api/melodies", params={"max_bars": 4, "min_bars": 1}).json()
    assert short["total"] and all(1 <= m["bars"] <= 4 for m in short["melodies"])
    page = api.get("/api/melodies", params={"limit": 5, "offset": 10}).json()
    assert len(page["melodies"]) == 2 and page["total"] == 12
    facets = api.get("/api/facets").json()["facets"]
    assert facets["style"] == sorted(STYLES) and facets["time_signature"] == ["3/4", "4/4"]
    assert api.get("/api/melodies", params={"min_bars": "nan"}).status_code == 422
    assert api.get("/api/melodies", params={"sort": "pitches"}).status_code == 422


def test_unknown_and_hostile_ids_are_404(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    assert api.get(f"/api/melodies/{ids[0]}").json()["style"] == "irish_folk"
    for bad in ("0" * 16, "..%2f..%2fetc%2fpasswd", "%2e%2e", "ZZZZ"):
        assert api.get(f"/api/melodies/{bad}").status_code == 404, bad
        assert api.get(f"/api/melodies/{bad}/score.abc").status_code == 404, bad


def test_reviews_are_versioned_and_a_stale_write_is_a_409(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    url = f"/api/melodies/{ids[3]}/review"
    first = api.put(url, json={"decision": "approve", "rating": 4, "tags": ["calm", "loop-ready"], "note": "A",
                               "version": 0})
    assert first.status_code == 200 and first.json()["version"] == 1
    # a second editor still holding version 0 is refused and shown what is there now
    stale = api.put(url, json={"decision": "reject", "version": 0})
    assert stale.status_code == 409 and stale.json()["current"]["decision"] == "approve"
    # If-Match carries the version too
    again = api.put(url, json={"decision": "reject", "rating": 2}, headers={"If-Match": '"1"'})
    assert again.status_code == 200 and again.json()["version"] == 2
    assert api.put(url, json={"decision": "approve"}).status_code == 428  # no version at all
    assert api.get(f"/api/melodies/{ids[3]}").json()["review"]["decision"] == "reject"


@pytest.mark.parametrize("body", [
    {"rating": 7, "version": 0}, {"decision": "maybe", "version": 0}, {"tags": ["<script>"], "version": 0},
    {"note": "x" * 2001, "version": 0}, {"version": -1}, {"unknown": 1, "version": 0}, {"rating": "NaN", "version": 0},
])
def test_malformed_reviews_are_422(catalog, monkeypatch, body):
    folder, ids = catalog
    assert client(folder, monkeypatch).put(f"/api/melodies/{ids[0]}/review", json=body).status_code == 422


def test_big_bodies_are_413_and_writes_need_the_token(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch, token="s3cret")
    url = f"/api/melodies/{ids[0]}/review"
    headers = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    assert api.put(url, content=b"{" + b" " * 20000 + b"}", headers=headers).status_code == 413
    assert api.put(url, json={"rating": 3, "version": 0}).status_code == 401
    assert api.put(url, json={"rating": 3, "version": 0}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.post("/api/export", json={}).status_code == 401
    assert api.get("/api/melodies").status_code == 200  # reading needs no token
    assert api.put(url, json={"rating": 3, "version": 0}, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_decisions_survive_a_restart_and_export_with_the_approved_set(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    for i, decision in enumerate(("approve", "approve", "reject")):
        assert api.put(f"/api/melodies/{ids[i]}/review", json={"decision": decision, "rating": 5 - i,
                                                                 "tags": ["t"], "version": 0}).status_code == 200
    restarted = client(folder, monkeypatch)  # a new app over the same SQLite file
    approved = restarted.get("/api/melodies", params={"decision": "approve", "sort": "rating", "order": "desc"}).json()
    assert [m["id"] for m in approved["melodies"]] == [ids[0], ids[1]]
    assert restarted.get("/api/melodies", params={"decision": "none"}).json()["total"] == 9
    assert (folder / REVIEWS_FILE).is_file()
    summary = restarted.post("/api/export", json={"name": "first-pass"}).json()
    assert summary["melodies"] == 2
    exported = pq.read_table(folder / "exports" / "first-pass" / "manifest.parquet").to_pylist()
    assert {r["id"] for r in exported} == {ids[0], ids[1]}
    assert all(r["decision"] == "approve" and r["review_version"] == 1 for r in exported)
    for row in exported:
        exported_bytes = (folder / "exports" / "first-pass" / row["mid_path"]).read_bytes()
        assert exported_bytes == (folder / row["mid_path"]).read_bytes()
    assert restarted.post("/api/export", json={"name": "../escape"}).status_code == 422


def test_the_store_keeps_its_schema_version(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path}/r.sqlite")
    import sqlite3

    assert sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    sqlite3.connect(store.path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ValueError, match="upgrade musicgen"):
        ReviewStore(store.path)
    with pytest.raises(ValueError, match="--db"):
        default_database("s3://bucket/catalog")


def test_page_notation_and_piano_roll_are_served_locally(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    page = api.get("/").text
    assert '<script src="/static/abcjs-basic-min.js">' in page and "https://" not in page.split("<script")[1]
    assert api.get("/static/abcjs-basic-min.js").text.startswith("/*")
    assert api.get(f"/api/melodies/{ids[0]}/score.abc").text.startswith("%abc")
    assert api.get(f"/api/melodies/{ids[0]}/pianoroll.png").content[:4] == b"\x89PNG"
    assert api.get("/docs").status_code == 200 and "/api/melodies/{melody_id}/review" in api.get("/openapi.json").text


@pytest.mark.skipif(not wav_available(), reason="needs fluidsynth and a soundfont (make setup installs them)")
def test_a_missing_wav_preview_is_rendered_once_and_kept(catalog, monkeypatch):
    folder, ids = catalog
    api = client(folder, monkeypatch)
    response = api.get(f"/api/melodies/{ids[0]}/audio.wav")
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    assert (folder / "irish_folk" / f"{ids[0]}.wav").read_bytes() == response.content
