"""Shared fixtures: synthetic melodies, a small real corpus, Ray, and a loopback S3 server."""

from __future__ import annotations

import os
import random
import socket

import pytest
from hypothesis import strategies as st

from musicgen.music.melody import Melody, Note

TIME_SIGNATURES = [(2, 4), (3, 4), (4, 4), (6, 8), (9, 8), (2, 2), (5, 4), (3, 8), (4, 1)]


@st.composite
def melodies(draw, max_notes: int = 40) -> Melody:
    """Random monophonic melodies on the tick grid: any durations, rests, pickups, meters."""
    n = draw(st.integers(1, max_notes))
    cursor = draw(st.integers(0, 47))
    notes = []
    for _ in range(n):
        cursor += draw(st.sampled_from([0, 0, 0, 1, 2, 3, 6, 12, 50]))  # mostly legato, some rests
        duration = draw(st.integers(1, 200))
        notes.append(Note(draw(st.integers(0, 127)), cursor, duration))
        cursor += duration
    return Melody(tuple(notes), draw(st.sampled_from(TIME_SIGNATURES)), "C major", 120.0)


def random_melody(
    rng: random.Random, n_notes: int = 24, time_signature=(4, 4), low: int = 55, high: int = 79
) -> Melody:
    """A plausible melody: steps and small leaps on a sixteenth/eighth grid."""
    pitch, cursor, notes = rng.randint(low + 5, high - 5), 0, []
    for _ in range(n_notes):
        pitch = min(high, max(low, pitch + rng.choice([-4, -2, -1, 0, 1, 2, 3, 5])))
        duration = rng.choice([3, 6, 6, 12, 12, 18, 24])
        notes.append(Note(pitch, cursor, duration))
        cursor += duration + rng.choice([0, 0, 0, 0, 6])
    return Melody(tuple(notes), time_signature, "C major", 100.0)


def shard_rows(tok, melodies: list[Melody], split: str, style: str):
    """``melodies`` of one style as rows of the shard schema, as preprocessing writes them."""
    import pyarrow as pa

    from musicgen.data import shards

    tokens = [tok.encode(m, style) for m in melodies]
    n = len(melodies)
    return pa.table({
        "melody_id": [f"{split}-{style}-{i}" for i in range(n)], "style": [style] * n,
        "source_uri": [f"/corpus/{split}-{i}.mid" for i in range(n)], "piece_id": [f"{split}-{i}" for i in range(n)],
        "title": [None] * n, "tokens": tokens, "n_tokens": [len(t) for t in tokens],
        "n_notes": [len(m.notes) for m in melodies], "n_bars": [m.n_bars for m in melodies],
        "key": [m.key for m in melodies], "time_signature": ["{}/{}".format(*m.time_signature) for m in melodies],
        "tempo": [m.tempo for m in melodies], "sections": [[] for _ in melodies],
    }, schema=shards.SHARD_SCHEMA)


def write_shards(root: str, tok, melodies: dict[tuple[str, str], list[Melody]]) -> None:
    """A shards folder (one part per split and style, and the vocabulary) of ``{(split, style): melodies}``."""
    import pyarrow.fs as pafs

    from musicgen import storage
    from musicgen.data import shards

    for (split, style), items in melodies.items():
        shards.write_split_part(shard_rows(tok, items, split, style), pafs.LocalFileSystem(),
                                storage.join(root, shards.MELODIES_FOLDER), split, f"part-{style}")
    shards.write_vocab(root, tok.to_dict())


def jig(rng: random.Random) -> Melody:
    """Stepwise running eighths in 6/8."""
    pitch, notes = rng.randint(62, 70), []
    for i in range(24):
        pitch += rng.choice([-2, -1, 1, 2])
        notes.append(Note(pitch, 6 * i, 6))
    return Melody(tuple(notes), (6, 8))


def hymn(rng: random.Random) -> Melody:
    """Quarter and half notes with leaps, in 4/4."""
    return random_melody(rng, 16, (4, 4))


@pytest.fixture(scope="session", autouse=True)
def precision_cache(tmp_path_factory):
    """Sampling-precision decisions go to a file of this session, never the user's cache (set in
    os.environ before any Ray cluster starts, so its workers inherit it)."""
    from musicgen.sampling.precision import CACHE_ENV

    path = tmp_path_factory.mktemp("cache") / "precision.json"
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory):
    """A few real works per style exported from the music21 corpus (MidiTok-style round-trip data)."""
    from musicgen.data.corpus import export_corpus

    out = tmp_path_factory.mktemp("corpus")
    export_corpus(str(out), limit_per_style=4, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray cluster for a test module: 2 CPUs, no dashboard."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")  # never a stray cluster
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on 127.0.0.1 (what Ray and pyarrow use in their own tests).

    Sets the usual AWS variables, so the code under test finds the endpoint the way a
    user's MinIO or S3 setup would be found.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k)
             for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1"
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the loopback S3 server, created with boto3."""
    import uuid

    import boto3

    name = f"musicgen-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


STYLES = ("bach_chorale", "chinese_folk", "german_folk", "irish_folk", "renaissance")
TINY_LSTM = {"embed_dim": 32, "hidden_size": 48, "num_layers": 1, "style_dim": 8}


def tiny_style_classifier(styles=STYLES, per_style: int = 6, seed: int = 0):
    """A ``StyleClassifier`` fitted (the frozen recipe) on a few synthetic melodies per style, each style
    its own meter and register: a real companion in a second, not a good judge."""
    from musicgen.models.style_classifier import StyleClassifier

    rng = random.Random(seed)
    meters = [(4, 4), (6, 8), (3, 4), (2, 4), (3, 2), (9, 8)]
    melodies, labels = [], []
    for k, style in enumerate(styles):
        for _ in range(per_style):
            melodies.append(random_melody(rng, 16 + 2 * k, meters[k % len(meters)], 50 + 3 * k, 70 + 3 * k))
            labels.append(style)
    return StyleClassifier.fit(melodies, labels, epochs=50)


def save_tiny_artifact(uri: str, model: str = "lstm", tokenizer: str = "events", data: str | None = None,
                       seed: int = 0, style_classifier: bool = False, **config) -> str:
    """An untrained but complete model artifact, as ``musicgen train`` writes it: enough to
    exercise sampling, serving and the bulk job without training first. ``style_classifier``: with a
    tiny fitted classifier as its companion (``tiny_style_classifier``), as training writes one."""
    import torch

    from musicgen.models import build_model, save_artifact
    from musicgen.tokenizers import make_tokenizer

    tok = make_tokenizer(tokenizer, STYLES)
    torch.manual_seed(seed)
    fields = {"vocab_size": len(tok), "n_styles": len(STYLES),
              **(TINY_LSTM if model in ("lstm", "gan") else {}), **config}
    if model == "gan":
        fields["style_token_offset"] = tok.first_style_id
    net = build_model(model, **fields)
    companions = {}
    if style_classifier:
        from musicgen.models.style_companion import write_companion

        companions = write_companion(uri, tiny_style_classifier())
    from musicgen import storage
    from musicgen.data.shards import STATS_FILE, read_stats

    # the shards' stats, as training records them (the styles' form mix included), where there are shards
    stats = read_stats(data) if data and storage.exists(storage.join(data, STATS_FILE)) else None
    save_artifact(uri, net, model, tokenizer=tok.to_dict(), styles=STYLES,
                  train_config={"name": f"tiny-{model}", "data": data}, companions=companions, data_stats=stats)
    return uri


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> str:
    """A tiny untrained events-tokenizer LSTM artifact on local disk, with a tiny style classifier."""
    return save_tiny_artifact(str(tmp_path_factory.mktemp("tiny") / "model"), style_classifier=True)
