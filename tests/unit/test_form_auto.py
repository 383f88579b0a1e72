"""Forms drawn from a style's own mix (``--form auto``): the label preprocessing counts for each
corpus tune, the draw, and the request builders of generate, Serve and the bulk job that use it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from musicgen.catalog.generate import melody_id, row_request, shape_of
from musicgen.config import BulkConfig
from musicgen.music.form import (
    COPIES_PER_FORM,
    THROUGH_COMPOSED,
    FormMix,
    form_and_copies,
    form_label,
    format_copies,
    parse_copies,
)
from musicgen.music.melody import Melody, Note
from musicgen.sampling.cli_generate import make_requests
from musicgen.sampling.form import draw_copies, resolve_form, shape_fields
from musicgen.serving.schemas import MelodyRequest
from tests.unit.test_form import BAR, tune

MIX = {"AABB:8": 60, "AAB:4": 10, THROUGH_COMPOSED: 30, "ABCDEFGHA:4": 5, "AABB:20": 5}
COPIES = {"AABB:8": [((2, 0), (9, 1)), ((20, 16),)], THROUGH_COMPOSED: [((2, 0), (17, 3))]}


def test_a_tunes_label_is_its_form_and_median_section_length():
    assert form_label(tune("AABB", section_bars=4)) == "AABB:4"
    assert form_label(tune("AAB", section_bars=8)) == "AAB:8"
    plain = Melody((Note(60, 0, BAR), Note(62, BAR, BAR)), (4, 4), "C major")
    assert form_label(plain) == THROUGH_COMPOSED


def test_a_tune_without_written_sections_is_read_as_four_bar_phrases():
    written = tune("ABAC", section_bars=4)
    unwritten = replace(written, sections=())
    assert form_label(unwritten) == "ABAC:4"
    # a pickup bar belongs to the first phrase
    pickup = replace(unwritten, notes=(Note(67, BAR - 12, 12), *(Note(n.pitch, n.onset + BAR, n.duration)
                                                                 for n in unwritten.notes)))
    assert pickup.n_bars == 17 and form_label(pickup) == "ABAC:4"
    # not a whole number of phrases, or more than 8 of them: no form can be told
    assert form_label(tune("ABCDEFGHI", section_bars=4)) == THROUGH_COMPOSED
    assert form_label(replace(tune("ABCDEFGHI", section_bars=4), sections=())) == THROUGH_COMPOSED
    ten = Melody(tuple(Note(60 + i % 5, i * BAR, BAR) for i in range(10)), (4, 4), "C major")
    assert form_label(ten) == THROUGH_COMPOSED


def test_auto_draws_each_form_in_proportion_and_the_same_for_the_same_seed():
    draws = Counter(resolve_form("auto", None, seed, FormMix(MIX), max_bars=64) for seed in range(3000))
    # nine sections or 80 bars cannot be sampled, so they are never drawn
    assert set(draws) == {("AABB", 8), ("AAB", 4), ("A", 16)}  # a through-composed tune: one section
    total = sum(draws.values())
    assert draws[("AABB", 8)] / total == pytest.approx(0.6, abs=0.04)
    assert draws[("A", 16)] / total == pytest.approx(0.3, abs=0.04)
    mix = FormMix(MIX)
    assert [resolve_form("AUTO", 4, s, mix, 64) for s in range(50)] == [resolve_form("auto", 8, s, mix, 64)
                                                                       for s in range(50)]


def test_a_given_form_passes_through_and_auto_without_a_mix_says_what_to_do():
    assert resolve_form("aabb", 4, 0, FormMix(), 64) == ("AABB", 4)
    assert resolve_form(None, None, 0, FormMix(), 64) == (None, 8)
    with pytest.raises(ValueError, match="give a form such as AABB"):
        resolve_form("auto", 8, 0, FormMix(), 64)
    with pytest.raises(ValueError, match="give a form such as AABB"):
        resolve_form("auto", 8, 0, FormMix({"AABB:20": 3}), 64)


def test_generate_requests_with_auto_take_each_length_from_their_form():
    requests = make_requests("irish_folk", 40, 7, form="auto", form_mix=FormMix(MIX), variation=0.125)
    assert {(r.form, r.section_bars) for r in requests} == {("AABB", 8), ("AAB", 4), ("A", 16)}
    for r in requests:
        assert r.bars == len(r.form) * r.section_bars and r.variation == 0.125
    with pytest.raises(ValueError, match="leave out --bars"):
        make_requests("irish_folk", 1, 0, form="auto", bars=16, form_mix=FormMix(MIX))


def test_auto_returns_sections_as_the_drawn_melody_did():
    from musicgen.sampling.form import drawn_variation

    exact_b = ((12, 8), (13, 9), (14, 10), (15, 11))
    # AABB:4 whose second A repeats the first but for its last bar (a second ending)
    assert drawn_variation("AABB", 4, ((4, 0), (5, 1), (6, 2), *exact_b)) == 0.25
    assert drawn_variation("AABB", 4, ((4, 0), (5, 1), (6, 2), (7, 3), *exact_b)) == 0
    # a bar of the first A that repeats an earlier one: its return points at that earlier bar too
    assert drawn_variation("AA", 4, ((1, 0), (4, 0), (5, 0), (6, 2), (7, 3))) == 0
    assert drawn_variation("AB", 4, ()) == 0, "nothing returns"
    assert drawn_variation("AA", 4, ()) == 1, "a return that repeats nothing is all new (sampling keeps its first bar)"
    mix = FormMix({"AABB:4": 1}, {"AABB:4": [((4, 0), (5, 1), (6, 2), *exact_b)]})
    assert shape_fields("auto", None, 0.0, None, 3, mix)["variation"] == 0.25
    assert shape_fields("auto", None, 0.5, None, 3, mix)["variation"] == 0.5, "asked for more: more"
    assert shape_fields("auto", None, 0.0, None, 3, FormMix({"AABB:4": 1}))["variation"] == 0, "no copies known"


class _Meta:
    def form_mix(self, style):
        return FormMix(MIX, COPIES) if style == "irish_folk" else FormMix({THROUGH_COMPOSED: 1})


class _Generator:
    meta = _Meta()


def test_bulk_rows_draw_their_style_forms_and_a_formed_melody_has_its_own_id():
    sampling = {"bars": 16, "temperature": 1.0, "top_k": 0, "top_p": 0.9, "guidance": 2.0, "form": "auto",
                "section_bars": 8, "variation": 0.0, "loop": False}
    irish = [row_request(_Generator(), "irish_folk", seed, sampling) for seed in range(40)]
    assert {r.form for r in irish} == {"AABB", "AAB", "A"}
    assert all(r.bars == len(r.form) * r.section_bars for r in irish)
    german = row_request(_Generator(), "german_folk", 3, sampling)
    assert (german.form, german.bars, shape_of(german)) == ("A", 16, ":A:16:0:0")
    plain = row_request(_Generator(), "german_folk", 3, {**sampling, "form": None})
    assert (plain.form, plain.bars, shape_of(plain)) == (None, 16, "")
    assert melody_id("v", "german_folk", 3, shape_of(plain)) == melody_id("v", "german_folk", 3)  # ids kept
    assert melody_id("v", "german_folk", 3, shape_of(german)) != melody_id("v", "german_folk", 3)


def test_a_bulk_job_may_give_a_style_its_own_form():
    from musicgen.catalog.acceptance import check_style_forms
    from musicgen.sampling.form import parse_style_form

    assert parse_style_form("aabb:4") == ("AABB", 4) and parse_style_form(" AAB ") == ("AAB", None)
    assert parse_style_form("auto") == ("auto", None) and parse_style_form("none") == (None, None)
    for bad, message in (("BA:4", "starts with A"), ("AABB:0", "1 to 64"), ("AABB:x", "whole number")):
        with pytest.raises(ValueError, match=message):
            parse_style_form(bad)
    sampling = {"bars": 16, "form": "auto", "section_bars": 8, "variation": 0.0, "loop": False,
                "style_forms": {"german_folk": "ABAC:2", "bach_chorale": "AAB", "renaissance": "none"}}
    german = row_request(_Generator(), "german_folk", 3, sampling)
    assert (german.form, german.section_bars, german.bars) == ("ABAC", 2, 8)
    chorale = row_request(_Generator(), "bach_chorale", 3, sampling)
    assert (chorale.form, chorale.section_bars, chorale.bars) == ("AAB", 8, 24)  # the job's bars a section
    line = row_request(_Generator(), "renaissance", 3, sampling)
    assert (line.form, line.bars, shape_of(line)) == (None, 16, "")  # no form: the job's plain length
    assert row_request(_Generator(), "irish_folk", 3, sampling) == row_request(
        _Generator(), "irish_folk", 3, {**sampling, "style_forms": {}}), "a style not named keeps --form"
    config = BulkConfig(model="m", out="o", per_style=1, style_forms={"german_folk": "ABAC:2"})
    check_style_forms(config, ("german_folk", "irish_folk"))
    with pytest.raises(ValueError, match="not among this job's styles"):
        check_style_forms(config, ("irish_folk",))
    with pytest.raises(ValueError, match="german_folk=BA: a form starts with A"):
        check_style_forms(BulkConfig(model="m", out="o", per_style=1, style_forms={"german_folk": "BA"}),
                          ("german_folk",))


def test_bulk_rows_and_serve_refuse_a_bad_form_and_take_auto():
    sampling = {"bars": 16, "form": "BA", "section_bars": 8, "variation": 0.0, "loop": False}
    with pytest.raises(ValueError, match="starts with A"):
        row_request(_Generator(), "irish_folk", 0, sampling)
    with pytest.raises(ValueError, match="variation"):
        BulkConfig(model="m", out="o", per_style=1, form="AABB", variation=2)
    assert MelodyRequest(form="Auto").form == "auto"
    assert MelodyRequest(form="aabb").form == "AABB"


def test_generate_with_form_auto_draws_from_the_shipped_models_mix_and_shows_each_form(tmp_path, capsys):
    """The shipped model carries its styles' form mix: Irish tunes come out in Irish forms, each
    recorded in its JSON and shown in the table."""
    import json

    from musicgen.cli import main
    from musicgen.sampling import MelodyGenerator

    mix = MelodyGenerator.from_artifact("pretrained", device="cpu").meta.form_mix("irish_folk")
    assert mix.forms.get("AABB:8", 0) > mix.forms.get(THROUGH_COMPOSED, 0)  # the commonest written form of the style
    assert main(["generate", "--style", "irish_folk", "--form", "auto", "--n", "3", "--seed", "1",
                 "--format", "json", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for seed in (1, 2, 3):
        data = json.loads((tmp_path / f"irish_folk-{seed}.json").read_text())
        form, section_bars = resolve_form("auto", None, seed, mix, 64)
        pickup = data["notes"][0]["onset_ticks"] > 0  # a pickup bar ahead of whole sections
        assert (data["meta"]["form"], data["meta"]["section_bars"], data["bars"]) == (
            form, section_bars, len(form) * section_bars + pickup)
        assert f"irish_folk-{seed}" in table and f"{form} x {section_bars}" in table



def test_a_models_form_mixes_are_read_from_its_stats_once(monkeypatch):
    """The bulk job builds every melody's request with its style's mix: parsing the stats each time cost
    the driver and every actor milliseconds a melody. Same mixes, read once per artifact."""
    from musicgen.models.artifact import ArtifactMeta

    stats = {"per_style": {"irish_folk": FormMix(MIX, COPIES).to_stats()}}
    meta = ArtifactMeta("lstm", {}, 0, "2", data_stats=stats)
    reads = []
    original = FormMix.from_stats
    monkeypatch.setattr(FormMix, "from_stats", classmethod(lambda cls, entry: reads.append(1) or original(entry)))
    assert meta.form_mix("irish_folk") == FormMix(MIX, COPIES) and meta.form_mix("nobody") == FormMix()
    assert meta.form_mix("irish_folk") is meta.form_mix("irish_folk") and len(reads) == 1


def test_preprocessing_reads_a_tunes_form_and_repeated_bars_from_one_comparison():
    label, copies = form_and_copies(tune("AABB", section_bars=4), max_bars=64)
    assert label == "AABB:4" and copies == tuple((bar, bar - 4) for bar in (*range(4, 8), *range(12, 16)))
    assert form_and_copies(tune("ABCD", section_bars=4), max_bars=64)[1] == ()
    # a melody longer than a request may be: its copies within the bars one may ask for
    assert form_and_copies(tune("AABB", section_bars=4), max_bars=10) == ("AABB:4", ((4, 0), (5, 1), (6, 2), (7, 3)))
    assert format_copies(copies[:2]) == "4<0 5<1" and parse_copies(format_copies(copies)) == copies
    assert parse_copies("") == ()


def test_a_form_mix_counts_every_melody_keeps_some_and_reads_back_as_it_was_written():
    shapes = [("AABB:8", ((8, 0),), 16)] * (COPIES_PER_FORM + 5) + [(THROUGH_COMPOSED, (), 12), ("AB:4", ((5, 1),), 8)]
    mix = FormMix.tally(shapes)
    assert mix.forms == {"AABB:8": COPIES_PER_FORM + 5, THROUGH_COMPOSED: 1, "AB:4": 1}
    assert list(mix.forms) == list(mix.copies) == list(mix.lengths)  # the most common first
    kept = [COPIES_PER_FORM, 1, 1]
    assert [len(mix.copies[k]) for k in mix.forms] == [len(mix.lengths[k]) for k in mix.forms] == kept
    assert mix.copies["AB:4"] == [((5, 1),)] and mix.lengths[THROUGH_COMPOSED] == [12]
    stats = json.loads(json.dumps(mix.to_stats()))  # as stats.json and a model's metadata keep it
    assert stats["copies"]["AB:4"] == ["5<1"]
    assert FormMix.from_stats(stats) == mix
    # stats written before the lengths (and before the copies) still read
    assert FormMix.from_stats({"forms": {"AB:4": 3}}) == FormMix({"AB:4": 3})


def test_auto_draws_the_repeated_bars_of_a_melody_of_its_form():
    mix = FormMix(MIX, COPIES)
    for seed in range(60):
        fields = shape_fields("auto", None, 0.0, None, seed, mix)
        options = {"AABB": set(COPIES["AABB:8"]), "A": {((2, 0),), ()}, "AAB": {()}}[fields["form"]]
        assert fields.get("copies", ()) in options  # AAB:4 records none; A:16 keeps the bars within 16
    assert [shape_fields("auto", None, 0.0, None, s, mix).get("copies") for s in range(20)] == [
        shape_fields("auto", None, 0.0, None, s, mix).get("copies") for s in range(20)]
    assert len({draw_copies(COPIES["AABB:8"], s, 32) for s in range(40)}) == 2
    assert draw_copies([], 0, 16) == ()
    assert "copies" not in shape_fields("AABB", 8, 0.0, None, 0, mix)  # a form asked for copies nothing


def test_a_through_composed_tune_is_as_long_as_the_melody_its_copies_come_from():
    """The style's through-composed melodies vary in length (Chinese songs 9 to 41 bars): a tune drawn
    with them takes the length of the melody whose repeated bars it takes, and its copies fit in it."""
    copies = [((2, 0),), ((9, 1), (30, 3)), ()]
    mix = FormMix({THROUGH_COMPOSED: 3}, {THROUGH_COMPOSED: copies}, {THROUGH_COMPOSED: [12, 40, 90]})
    by_length = {}
    for seed in range(60):
        fields = shape_fields("auto", None, 0.0, None, seed, mix)
        assert fields["form"] == "A" and fields["bars"] == fields["section_bars"]
        by_length.setdefault(fields["bars"], set()).add(fields.get("copies", ()))
    # 90 bars is more than a request may ask for: the longest one may
    assert by_length == {12: {((2, 0),)}, 40: {((9, 1), (30, 3))}, 64: {()}}
    assert resolve_form("auto", None, 5, mix, 64) == ("A", shape_fields("auto", None, 0.0, None, 5, mix)["bars"])
    # a model whose shards predate the lengths: 16 bars, as before
    assert shape_fields("auto", None, 0.0, None, 5, FormMix({THROUGH_COMPOSED: 3}, {THROUGH_COMPOSED: copies}))[
        "bars"] == 16


def test_a_section_keeps_the_candidate_whose_repeated_bars_come_nearest_the_plan():
    """Among candidates that come to rest alike, the one whose number of repeated bars is nearest the
    planned copies is kept: Palestrina's long lines repeat bars of their own on top of the copies."""
    from musicgen.music.form import repeats_in
    from musicgen.sampling.form import _ending_and_repeats
    from tests.unit.test_form import BAR

    exact = tune("AABB", section_bars=4)  # bars 4-7 repeat 0-3, bars 12-15 repeat 8-11
    assert repeats_in(exact, 0, 16) == 8 and repeats_in(exact, 8, 16) == 4 and repeats_in(exact, 0, 4) == 0
    varied = replace(exact, notes=tuple(n._replace(pitch=n.pitch + 1) if 12 * BAR <= n.onset < 13 * BAR else n
                                        for n in exact.notes))  # the second B's first bar is new
    assert repeats_in(varied, 8, 16) == 3
    end = 16 * BAR

    def kept(planned: int, made: tuple[bool, bool] = (True, True)) -> Melody:
        plan = tuple((bar, bar - 4) for bar in range(12, 12 + planned))
        return max(zip([exact, varied], made), key=lambda c: _ending_and_repeats(c[0], end, True, (8, 16), plan,
                                                                                c[1]))[0]

    assert kept(4) is exact and kept(3) is varied and kept(0) is varied
    # where both come as near, the one that made the planned copies
    assert kept(4, made=(False, True)) is exact and kept(3, made=(True, False)) is varied
    tie = replace(exact, notes=tuple(n._replace(pitch=n.pitch + 1) if 4 * BAR <= n.onset < 5 * BAR else n
                                     for n in exact.notes))  # a bar of the first A is new: 4 repeats in 8-16 still
    assert repeats_in(tie, 8, 16) == 4
    assert max(zip([exact, tie], (False, True)), key=lambda c: _ending_and_repeats(
        c[0], end, True, (8, 16), tuple((b, b - 4) for b in range(12, 16)), c[1]))[0] is tie


def test_half_of_a_sections_candidates_make_its_planned_copies(monkeypatch):
    from musicgen.sampling import MelodyGenerator, SampleRequest
    from musicgen.sampling import form as form_sampling

    asked = []
    real = form_sampling.sample_tokens

    def spy(model, tokenizer, asks, device, **kwargs):
        asked.append(asks)
        return real(model, tokenizer, asks, device, **kwargs)

    monkeypatch.setattr(form_sampling, "sample_tokens", spy)
    generator = MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")
    plan = ((4, 0), (5, 1))
    generator.generate([SampleRequest("german_folk", 3, bars=8, form="A", section_bars=8, copies=plan)])
    section = asked[-1]  # after the opening bar: the one section's candidates
    assert len(section) == form_sampling.FINAL_CANDIDATES
    # the plan (moved on by a pickup bar where the tune opens with one) in every other candidate
    assert {a.copies for a in section[::2]} in ({plan}, {tuple((b + 1, s + 1) for b, s in plan)})
    assert {a.copies for a in section[1::2]} == {()}


def test_a_form_asked_for_keeps_the_best_ending_whatever_it_repeats(monkeypatch):
    """Only a tune that repeats bars as a melody of its style did (``copies``) ranks its candidates by
    their repeats; one with a form asked for keeps its model's own repeated bars, as before."""
    from musicgen.sampling import MelodyGenerator, SampleRequest
    from musicgen.sampling import form as form_sampling

    ranked = []
    rank = form_sampling._ending_and_repeats
    monkeypatch.setattr(form_sampling, "_ending_and_repeats", lambda *args: ranked.append(args) or rank(*args))
    generator = MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")
    generator.generate([SampleRequest("irish_folk", 0, bars=8, form="AB", section_bars=4)])
    assert ranked == []
    generator.generate([SampleRequest("irish_folk", 0, bars=8, form="AB", section_bars=4, copies=((6, 5),))])
    assert ranked
