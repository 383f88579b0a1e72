"""``auto`` precision: timed on this machine, never much slower than the alternative, cached per CPU and artifact."""

from __future__ import annotations

import json
import time

import pytest
import torch

import musicgen.sampling.precision as precision_module
from musicgen.models import build_model
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.sampling.precision import CACHE_ENV, available_precisions, cache_path, fastest, resolve_precision
from musicgen.tokenizers import make_tokenizer
from tests.conftest import STYLES, save_tiny_artifact

CPU = torch.device("cpu")
TOKENIZER = make_tokenizer("events", STYLES)
# big enough that the step, not the Python around it, decides which precision is faster; small enough for seconds
SMALL_LSTM = {"embed_dim": 64, "hidden_size": 256, "num_layers": 1, "style_dim": 16}


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory) -> str:
    return save_tiny_artifact(str(tmp_path_factory.mktemp("small") / "model"), **SMALL_LSTM)


@pytest.fixture
def one_thread():
    """As actors and replicas sample (and no OpenMP threads waiting on each other on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seconds_per_step(generators: dict[str, MelodyGenerator], batch_size: int, rounds: int = 5) -> dict[str, float]:
    """Best-of-``rounds`` wall time of one ``generate`` call per precision, interleaved (a shared machine's slow
    spells hit all alike), over the steps the call took (its longest melody): the end-to-end figure ``auto`` must
    not be wrong about. Per step, because each precision samples other melodies (of other lengths) from an
    untrained model: a call of shorter melodies is no faster precision."""
    requests = [SampleRequest(STYLES[i % len(STYLES)], i, bars=2) for i in range(batch_size)]
    best = dict.fromkeys(generators, float("inf"))
    steps = {p: max(len(g.tokens) for g in generator.generate(requests)) - 2  # warm-up
             for p, generator in generators.items()}
    for _ in range(rounds):
        for precision, generator in generators.items():
            started = time.perf_counter()
            generator.generate(requests)
            best[precision] = min(best[precision], (time.perf_counter() - started) / steps[precision])
    return best


@pytest.mark.parametrize("batch_size", [1, 32])
def test_auto_never_picks_a_precision_more_than_10_percent_slower(small_artifact, batch_size, monkeypatch, one_thread):
    monkeypatch.setenv(CACHE_ENV, "off")  # measure now, on this machine as it is
    chosen = MelodyGenerator.from_artifact(small_artifact, device="cpu", precision="auto", batch_sizes=(batch_size,))
    assert chosen.precision_choice.source == "measured"
    offered = available_precisions(chosen.model, CPU)
    assert set(chosen.precision_choice.ms_per_step) == set(offered) and len(offered) >= 2
    generators = {p: MelodyGenerator.from_artifact(small_artifact, device="cpu", precision=p) for p in offered}
    seconds = seconds_per_step(generators, batch_size)
    if seconds[chosen.precision] > 1.1 * min(seconds.values()):  # one more look before calling it wrong:
        second_look = seconds_per_step(generators, batch_size)
        seconds = {p: min(s, t) for (p, s), t in zip(seconds.items(), second_look.values())}
    assert seconds[chosen.precision] <= 1.1 * min(seconds.values()), (chosen.precision_choice.describe(), seconds)


def test_fastest_is_the_precision_with_the_smallest_worst_slowdown():
    assert fastest({"fp32": [1.0], "int8": [0.5]}) == "int8"
    # int8 is 3x slower at batch 1 but 1.25x faster at 16; fp32 loses at most 1.25x
    assert fastest({"fp32": [1.0, 5.0], "int8": [3.0, 4.0]}) == "fp32"
    assert fastest({"fp32": [1.0, 5.0], "int8": [1.1, 2.0]}) == "int8"
    assert fastest({"fp32": [1.0, 2.0], "int8": [4.0, None]}) == "fp32", "a precision dropped at batch 1 is out"


def test_a_precision_several_times_slower_in_its_warm_up_is_timed_no_further(monkeypatch, one_thread):
    from musicgen.models.lstm_cells import Int8Cell
    from musicgen.sampling import sampler
    from musicgen.sampling.precision import measure

    calls = {"fp32": [], "int8": []}
    real = sampler.sample_tokens

    def slow_int8(model, tokenizer, requests, **kwargs):
        int8 = isinstance(model.cell, Int8Cell)
        calls["int8" if int8 else "fp32"].append(len(requests))
        started = time.perf_counter()
        out = real(model, tokenizer, requests, **kwargs)
        if int8:  # ten times the real call's time
            time.sleep(9 * (time.perf_counter() - started))
        return out

    monkeypatch.setattr(sampler, "sample_tokens", slow_int8)
    model = build_model("lstm", vocab_size=len(TOKENIZER), n_styles=len(STYLES), embed_dim=16, hidden_size=32,
                        num_layers=1, style_dim=4).eval()
    ms = measure(model, TOKENIZER, ("fp32", "int8"), (1, 8), threads=1)
    assert calls["int8"] == [1], "only its warm-up call, at the first batch size"
    assert calls["fp32"].count(1) >= 3 and calls["fp32"].count(8) >= 3
    assert ms["int8"][0] > 3 * ms["fp32"][0] and ms["int8"][1] is None and None not in ms["fp32"]
    assert fastest(ms) == "fp32"


def test_the_choice_is_cached_per_artifact_and_batch_in_the_file_the_env_names(tmp_path, monkeypatch):
    path = tmp_path / "precision.json"
    monkeypatch.setenv(CACHE_ENV, str(path))
    assert cache_path() == path
    model = build_model("lstm", vocab_size=len(TOKENIZER), n_styles=len(STYLES), embed_dim=16, hidden_size=32,
                        num_layers=1, style_dim=4).eval()
    first = resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc")
    again = resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc")
    assert first.source == "measured" and again.source == "cached"
    assert (again.precision, again.ms_per_step) == (first.precision, first.ms_per_step)
    assert resolve_precision("auto", model, TOKENIZER, CPU, (8,), artifact="abc").source == "measured", (
        "another batch size"
    )
    assert resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="def").source == "measured", (
        "another artifact"
    )
    entries = json.loads(path.read_text())
    assert len(entries) == 3 and all(first.cpu in key and f"torch {torch.__version__}" in key for key in entries)
    # one model name covers CPUs with and without the units that make int8 or bf16 fast
    monkeypatch.setattr(precision_module, "cpu_summary", lambda: f"{first.cpu} (avx2)")
    assert resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc").source == "measured"
    monkeypatch.setattr(precision_module, "cpu_summary", lambda: f"{first.cpu} (avx2 avx512f avx512_vnni)")
    assert resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc").source == "measured"
    assert resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc").source == "cached"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_path() is None
    assert resolve_precision("auto", model, TOKENIZER, CPU, (4,), artifact="abc").source == "measured"


def test_an_explicit_precision_is_not_timed_and_must_be_offered():
    lstm = build_model("lstm", vocab_size=len(TOKENIZER), n_styles=len(STYLES), embed_dim=16, hidden_size=32,
                       num_layers=1, style_dim=4)
    asked = resolve_precision("int8", lstm, TOKENIZER, CPU)
    assert (asked.precision, asked.source, asked.ms_per_step) == ("int8", "asked", None)
    transformer = build_model("transformer", vocab_size=len(TOKENIZER), n_styles=len(STYLES), n_embd=16, n_head=2,
                              n_layer=1, block_size=16)
    assert resolve_precision("auto", transformer, TOKENIZER, CPU).precision == "fp32"
    assert resolve_precision("auto", transformer, TOKENIZER, CPU).source == "only"
    with pytest.raises(ValueError, match="int8 sampling needs an LSTM or GAN"):
        resolve_precision("int8", transformer, TOKENIZER, CPU)
