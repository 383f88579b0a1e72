"""The HTTP API in-process: the ingress's FastAPI app driven over ASGI, the style deployments faked.

No Ray cluster: ``serve.get_replica_context`` (how Serve hands a route its
``self``) returns an ingress built with fake style handles, so every answer
here is the app's own: validation, body limits, auth, routing. A hypothesis
fuzz test throws random JSON (NaN, huge integers, deep nesting, unicode) at
every route and asserts no 5xx.
"""

import asyncio
import json
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray import serve

from musicgen.music.form import FormMix
from musicgen.serving import app as serving
from musicgen.serving.schemas import MAX_BODY_BYTES, MelodyOut, StyleInfo

STYLES = ("irish_folk", "bach_chorale")


class _Remote:
    """A DeploymentHandle method: ``.remote(...)`` returns an awaitable."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def call():
            return self.fn(*args)

        return call()


def _fake_style(style: str) -> SimpleNamespace:
    melody = lambda request, formats: MelodyOut(  # noqa: E731
        style=request.style, seed=request.seed, bars=request.bars, key="C major", tempo=100.0,
        time_signature="4/4", model_id="fake", model_version="0" * 12, model_name="lstm", guidance=1.0, batch_size=1)
    info = dict(name=style, deployment=f"style-{style}", model_id="fake", model_version="0" * 12, model_name="lstm",
                default_guidance=1.0, precision="fp32", autoscaling=None, num_replicas=1, max_ongoing_requests=32,
                max_batch_size=16, batch_wait_timeout_s=0.001,
                precision_choice={"precision": "fp32", "requested": "fp32", "source": "asked", "batch_sizes": [1],
                                  "threads": 0, "cpu": "", "ms_per_step": None})
    # the fields this version of StyleInfo has (precision_choice is newer than this test)
    describe = lambda: StyleInfo(**{k: v for k, v in info.items() if k in StyleInfo.model_fields})  # noqa: E731
    return SimpleNamespace(generate=_Remote(melody), describe=_Remote(describe))


@pytest.fixture(scope="module")
def ingress():
    """The ingress class as written (under Serve's wrapper), with fake handles, as the routes' ``self``."""
    cls = serving.MelodyAPI.func_or_class.__mro__[1]
    instance = cls({s: _fake_style(s) for s in STYLES}, auth_token_env=None, guidable=False)
    patch = pytest.MonkeyPatch()
    patch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=instance))
    yield instance
    patch.undo()


class Answer(NamedTuple):
    status: int
    body: bytes
    read: int  # bytes of the request body the app read


def call(method: str, path: str, body: bytes = b"", chunks: int = 1, content_length: bool = True,
         headers: tuple = ()) -> Answer:
    """One request through the ASGI app; a 5xx comes back as its status (the app's error middleware
    re-raises after sending it, which is caught here)."""
    head = [(b"content-type", b"application/json"), *headers]
    if content_length:
        head.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode("utf-8", "surrogatepass"), "query_string": b"", "root_path": "",
             "headers": head, "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000)}
    size = max(1, -(-len(body) // chunks))
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    read = []
    sent: list[dict] = []

    async def receive():
        if messages:
            read.append(messages[0])
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    try:
        asyncio.run(serving.api(scope, receive, send))
    except Exception:  # noqa: BLE001 - what a server turns into a 500
        if not sent:
            return Answer(500, b"", 0)
    return Answer(sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), sum(len(m["body"]) for m in read))


def post(body: bytes | str | dict, style: str = "irish_folk", **kwargs) -> Answer:
    if isinstance(body, dict):
        body = json.dumps(body)
    return call("POST", f"/v1/styles/{style}/melodies", body if isinstance(body, bytes) else body.encode(), **kwargs)


def test_a_valid_request_reaches_the_style(ingress):
    status, body, _ = post({"n": 2, "seed": 5, "bars": 4})
    assert status == 200, body
    assert [m["seed"] for m in json.loads(body)["melodies"]] == [5, 6]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "tempo", "guidance", "n", "bars", "seed", "section_bars",
                                   "variation"])
def test_non_finite_numbers_are_422_and_not_echoed(ingress, field, text):
    status, body, _ = post(f'{{"{field}": {text}}}')
    assert status == 422, body
    answer = json.loads(body, parse_constant=lambda c: pytest.fail(f"the error echoes {c}"))
    assert answer["detail"] == f"{field}: Input should be a finite number"
    assert all("input" not in e for e in answer["errors"])


def test_a_form_sets_the_length_and_reaches_the_style(ingress):
    status, body, _ = post({"n": 2, "seed": 5, "form": "aabb", "section_bars": 4, "variation": 0.25})
    assert status == 200, body
    assert [m["bars"] for m in json.loads(body)["melodies"]] == [16, 16]
    status, body, _ = post({"seed": 5, "form": "ABA", "section_bars": 4, "bars": 12})
    assert status == 200, body
    status, body, _ = post({"seed": 5, "bars": 8, "loop": True})
    assert status == 200, body
    assert post({"loop": "sometimes"})[0] == 422


def test_form_auto_draws_each_melody_a_form_of_the_style(ingress, monkeypatch):
    status, body, _ = post({"n": 2, "form": "auto"})
    assert status == 422 and "records none" in json.loads(body)["detail"], body  # no form mix for this model
    monkeypatch.setattr(ingress, "form_mixes", {"irish_folk": FormMix({"AABB:8": 3, "AB:4": 1, "none": 1})})
    status, body, _ = post({"n": 12, "seed": 3, "form": "Auto"})
    assert status == 200, body
    assert {m["bars"] for m in json.loads(body)["melodies"]} == {32, 8, 16}
    status, body, _ = post({"form": "auto", "bars": 16})
    assert status == 422 and "leave out bars" in json.loads(body)["detail"], body


@pytest.mark.parametrize("fields, message", [
    ({"form": "BA"}, "form: a form starts with A"),
    ({"form": "AB1"}, "form: a form is 1 to 8 letters such as AABB"),
    ({"form": "ABCDEFGHA"}, "form: a form is 1 to 8 letters"),
    ({"form": "A" * 100}, "form: String should have at most 16 characters"),
    ({"form": "AABB", "bars": 16}, "a form of 4 sections of 8 bars is 32 bars"),
    ({"form": "AABB", "section_bars": 32}, "bars must be between 1 and 64"),
    ({"form": "AB", "variation": 2}, "variation: Input should be less than or equal to 1"),
])
def test_a_bad_form_is_a_422_that_says_what_is_wrong(ingress, fields, message):
    status, body, _ = post(fields)
    assert status == 422, body
    assert message in json.loads(body)["detail"], body


@pytest.mark.parametrize("chunks, content_length", [(1, True), (64, False)])
def test_bodies_over_the_limit_are_413_before_they_are_read(ingress, chunks, content_length):
    big = json.dumps({"n": 1, "key": "C major", "pad": "x" * (5 * 2**20)}).encode()
    answer = post(big, chunks=chunks, content_length=content_length)
    assert answer.status == 413
    if content_length:
        assert answer.read == 0, "the Content-Length alone refused it"
    else:
        assert answer.read <= MAX_BODY_BYTES + len(big) // chunks, "reading stopped at the limit"
    answer = post(json.dumps({"n": 1, "pad": "x" * (MAX_BODY_BYTES - 100)}))
    assert answer.status == 422, "under the limit: read, and refused for the unknown field only"


def test_lone_surrogates_and_deep_nesting_are_4xx(ingress):
    assert post('{"\\ud800": 1}')[0] == 422
    assert post('{"key": "\\udfff"}')[0] == 422
    assert post('{"n": ' + "[" * 20000 + "]" * 20000 + "}")[0] == 400  # json.loads gives up: a parse error
    assert post('{"n": ' + "[" * 900 + "]" * 900 + "}")[0] == 422
    assert post('{"seed": ' + "9" * 5000 + "}")[0] == 400  # more digits than Python converts


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = ("n", "bars", "temperature", "top_k", "top_p", "guidance", "seed", "key", "tempo", "time_signature", "format")
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=6) | json_values
paths = st.sampled_from(["/healthz", "/v1/styles", "/openapi.json", "/docs"]).map(lambda p: ("GET", p)) | st.one_of(
    st.sampled_from(STYLES), st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
                                     min_size=1, max_size=12),
).map(lambda s: ("POST", f"/v1/styles/{s}/melodies"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=paths, body=bodies, nesting=st.integers(0, 3000))
def test_fuzz_every_route_never_answers_5xx(ingress, route, body, nesting):
    method, path = route
    text = json.dumps(body)  # NaN and Infinity come out as the bare words Python's parser takes back
    if nesting:
        text = "[" * nesting + text + "]" * nesting
    status, answer, _ = call(method, path, text.encode("utf-8", "surrogatepass"))
    assert status < 500, (path, text[:200], answer[:300])
    if status == 422:
        json.loads(answer, parse_constant=lambda c: pytest.fail(f"the error echoes {c}"))
