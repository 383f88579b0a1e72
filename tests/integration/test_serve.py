"""The melody service for real: Ray Serve on 127.0.0.1, the tiny model, two styles, plain HTTP and the clients.

One deployment for the module (about 20 s to start); auth is on, so the tests
send the token unless they test its absence.
"""

import asyncio
import base64
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pretty_midi
import pytest
import requests

from musicgen.client import AsyncMusicgenClient, MusicgenClient, MusicgenError, save_all_midi, save_midi
from tests.conftest import _free_port

pytestmark = pytest.mark.integration

TOKEN_ENV = "MUSICGEN_TEST_API_TOKEN"
TOKEN = "test-token-123"
STYLES = ("irish_folk", "bach_chorale")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_token():
    """Set before Ray starts, so the replicas inherit it (as a cluster's nodes would)."""
    os.environ[TOKEN_ENV] = TOKEN
    yield TOKEN
    os.environ.pop(TOKEN_ENV, None)


@pytest.fixture(scope="module")
def server(api_token, ray_local, tiny_artifact):
    from ray import serve

    from musicgen.serving.app import APP_NAME, Autoscaling, ServeConfig, build_app

    port = _free_port()
    quiet = {"log_level": "WARNING"}
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=quiet)
    try:
        # one replica per style, and a long batch window, so the batching test is deterministic
        config = ServeConfig(model=tiny_artifact, styles=STYLES, autoscaling=Autoscaling(1, 1),
                             max_batch_size=8, batch_wait_timeout_s=0.05, auth_token_env=TOKEN_ENV)
        serve.run(build_app(config), name=APP_NAME, route_prefix="/", logging_config=quiet)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def post(server, style="irish_folk", headers=AUTH, **body) -> requests.Response:
    return requests.post(f"{server}/v1/styles/{style}/melodies", json=body, headers=headers, timeout=60)


def test_health_docs_and_openapi_need_no_token(server):
    assert requests.get(f"{server}/healthz").json() == {"status": "ok", "styles": list(STYLES)}
    docs = requests.get(f"{server}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = requests.get(f"{server}/openapi.json").json()
    assert set(spec["paths"]) == {"/healthz", "/v1/styles", "/v1/styles/{style}/melodies"}
    assert "MelodyRequest" in spec["components"]["schemas"]


def test_styles_describe_their_deployments(server):
    styles = requests.get(f"{server}/v1/styles", headers=AUTH).json()["styles"]
    assert [s["name"] for s in styles] == list(STYLES)
    for s in styles:
        assert s["deployment"] == f"style-{s['name']}" and s["model_id"] == "tiny-lstm"
        assert s["autoscaling"]["min_replicas"] == s["autoscaling"]["max_replicas"] == 1
        assert (s["max_batch_size"], s["batch_wait_timeout_s"], s["max_ongoing_requests"]) == (8, 0.05, 32)
        assert s["default_guidance"] == 1.0, "the tiny model was trained without style dropout"
        choice = s["precision_choice"]  # auto: timed at a lone request's batch and a full one
        assert choice["precision"] == s["precision"] and choice["batch_sizes"] == [1, 8]
        assert choice["source"] in ("measured", "cached") and {"fp32", "int8"} <= set(choice["ms_per_step"])


def test_melody_in_all_formats(server):
    r = post(server, bars=4, seed=11, key="d minor", time_signature="3/4", tempo=90)
    assert r.status_code == 200, r.text
    (m,) = r.json()["melodies"]
    assert (m["style"], m["seed"], m["bars"], m["key"], m["tempo"], m["time_signature"]) == (
        "irish_folk", 11, 4, "D minor", 90.0, "3/4")
    assert (m["model_id"], m["model_name"], len(m["model_version"]), m["guidance"]) == ("tiny-lstm", "lstm", 12, 1.0)
    end = max(n["onset"] + n["duration"] for n in m["notes"])
    assert end == 12  # four bars of 3/4, in beats
    midi = pretty_midi.PrettyMIDI(io.BytesIO(base64.b64decode(m["midi_base64"])))
    assert [n.pitch for n in midi.instruments[0].notes] == [n["pitch"] for n in m["notes"]]
    assert midi.time_signature_changes[0].numerator == 3
    assert m["abc"].startswith("%abc-2.1\nX:1\n") and "M:3/4" in m["abc"] and "K:Dm" in m["abc"]


def test_same_seed_same_melodies_and_consecutive_seeds(server):
    first, again = (post(server, n=3, bars=4, seed=100).json()["melodies"] for _ in range(2))
    assert [m["seed"] for m in first] == [100, 101, 102]
    assert first == again  # the same seeds in the same batch: the same melodies, byte for byte
    assert len({json.dumps(m["notes"]) for m in first}) == 3
    picked = post(server, n=2, bars=2, format=["json"]).json()["melodies"]
    assert picked[1]["seed"] == picked[0]["seed"] + 1
    assert picked[0]["midi_base64"] is None and picked[0]["abc"] is None


@pytest.mark.parametrize("body, field", [
    ({"bars": 0}, "bars"), ({"top_p": 2}, "top_p"), ({"loudness": 3}, "loudness"),
    ({"key": "H major"}, "key"), ({"time_signature": "7/9"}, "time_signature"), ({"guidance": 6}, "guidance"),
])
def test_invalid_bodies_are_422_with_a_message(server, body, field):
    r = post(server, **body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"{field}: ")


def test_guidance_needs_a_model_trained_with_style_dropout(server):
    r = post(server, guidance=2.0)
    assert r.status_code == 422
    assert "style dropout" in r.json()["detail"]
    assert post(server, guidance=1.0, bars=2).status_code == 200


def test_unknown_style_is_404_listing_styles(server):
    r = post(server, style="jazz")
    assert r.status_code == 404
    assert r.json()["detail"] == "unknown style 'jazz'; available styles: irish_folk, bach_chorale"


def test_token_is_required(server):
    assert post(server, headers={}).status_code == 401
    assert post(server, headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = requests.get(f"{server}/v1/styles")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert post(server, bars=1).status_code == 200


def test_concurrent_requests_are_batched(server):
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda seed: post(server, style="bach_chorale", bars=4, seed=seed), range(8)))
    assert all(r.status_code == 200 for r in responses)
    sizes = [r.json()["melodies"][0]["batch_size"] for r in responses]
    assert max(sizes) > 1, sizes


def test_sync_client(server, tmp_path):
    with MusicgenClient(server, token=TOKEN) as client:
        assert client.health()["status"] == "ok"
        assert [s["name"] for s in client.styles()] == list(STYLES)
        melodies = client.melodies("irish_folk", n=2, bars=2, seed=5)
        assert [m["seed"] for m in melodies] == [5, 6]
        path = save_midi(melodies[0], tmp_path / "one.mid")
        assert pretty_midi.PrettyMIDI(str(path)).instruments[0].notes
        assert [p.name for p in save_all_midi(melodies, tmp_path / "all")] == ["irish_folk-5.mid", "irish_folk-6.mid"]
        with pytest.raises(MusicgenError) as exc:
            client.melodies("irish_folk", bars=0)
        assert exc.value.status == 422 and "bars" in exc.value.message
    with MusicgenClient(server, retries=0) as anonymous, pytest.raises(MusicgenError) as exc:
        anonymous.styles()
    assert exc.value.status == 401


def test_async_client(server):
    async def run():
        async with AsyncMusicgenClient(server, token=TOKEN) as client:
            health, styles, batches = await asyncio.gather(
                client.health(), client.styles(),
                asyncio.gather(*(client.melodies("irish_folk", bars=2, seed=s, format=["json"]) for s in range(4))))
            with pytest.raises(MusicgenError) as exc:
                await client.melodies("jazz")
            return health, styles, batches, exc.value

    health, styles, batches, error = asyncio.run(run())
    assert health["status"] == "ok" and len(styles) == 2
    assert [b[0]["seed"] for b in batches] == [0, 1, 2, 3]
    assert error.status == 404 and "available styles" in error.message


# -- retries, against a scripted stand-in server (no Ray) -----------------------------------


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``script``; counts the requests."""

    script: ClassVar[list[int]] = []
    hits = 0

    def do_GET(self):
        cls = type(self)
        status = cls.script[min(cls.hits, len(cls.script) - 1)]
        cls.hits += 1
        body = json.dumps({"status": "ok"} if status == 200 else {"detail": f"scripted {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def start(*statuses: int) -> str:
        _Scripted.script, _Scripted.hits = list(statuses), 0
        return f"http://127.0.0.1:{httpd.server_port}"

    yield start
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("statuses, hits, error", [
    ((503, 429, 200), 3, None),  # 5xx and 429 are retried
    ((400,), 1, 400),  # other 4xx are not
    ((500, 500, 500), 3, 500),  # retries run out
])
def test_clients_retry_what_a_retry_can_fix(scripted, statuses, hits, error):
    def check_sync():
        with MusicgenClient(scripted(*statuses), retries=2, backoff=0.01) as client:
            return client.health()

    async def check_async():
        async with AsyncMusicgenClient(scripted(*statuses), retries=2, backoff=0.01) as client:
            return await client.health()

    for check in (check_sync, lambda: asyncio.run(check_async())):
        if error is None:
            assert check() == {"status": "ok"}
        else:
            with pytest.raises(MusicgenError) as exc:
                check()
            assert exc.value.status == error and exc.value.message == f"scripted {error}"
        assert _Scripted.hits == hits


def test_clients_report_an_unreachable_server():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(MusicgenError, match="no answer from"):
        MusicgenClient(url, retries=1, backoff=0.01).health()

    async def check():
        async with AsyncMusicgenClient(url, retries=1, backoff=0.01) as client:
            await client.health()

    with pytest.raises(MusicgenError, match="no answer from"):
        asyncio.run(check())
