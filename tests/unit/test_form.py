"""Tunes with form: form strings, reading a corpus tune's form off its recorded sections, the style
profiles measured from them, and form-aware sampling (returning sections repeat, new ones differ,
the tune closes on a held tonic)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from musicgen.cli import main
from musicgen.evaluation.form import form_profile
from musicgen.music.form import (
    close_on_tonic,
    fixed_bar_ranges,
    form_adherence,
    form_letters,
    parse_form,
    pickup_bars,
    scale_degree,
    section_bar_ranges,
    section_slice,
    written_form,
)
from musicgen.music.melody import Melody, Note
from musicgen.music.metrics import repetition_ratio
from musicgen.music.performance import beat_ticks
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.sampling.form import varied_bars
from tests.conftest import STYLES

BAR = 48  # ticks of a 4/4 bar


def strain(rng: random.Random, bars: int, low: int, high: int) -> list[tuple[int, int, int]]:
    """(pitch, onset within the strain, duration) of a random strain of eighths and quarters."""
    notes, cursor = [], 0
    while cursor < bars * BAR:
        duration = min(rng.choice([6, 6, 12]), bars * BAR - cursor)
        notes.append((rng.randint(low, high), cursor, duration))
        cursor += duration
    return notes


def tune(form: str, section_bars: int = 4, seed: int = 0, key: str = "C major") -> Melody:
    """A hand-made tune in ``form``: each letter its own random strain, repeated exactly, with the
    section starts ingest records; the closing strain ends on C."""
    rng = random.Random(seed)
    strains = {letter: strain(rng, section_bars, 60 + 7 * i, 72 + 7 * i) for i, letter in enumerate(sorted(set(form)))}
    _, onset, duration = strains[form[-1]][-1]
    strains[form[-1]][-1] = (60, onset, duration)
    notes = []
    for s, letter in enumerate(form):
        notes += [Note(p, s * section_bars * BAR + onset, d) for p, onset, d in strains[letter]]
    return Melody(tuple(notes), (4, 4), key, sections=tuple(s * section_bars * BAR for s in range(len(form))))


@pytest.mark.parametrize("text, form", [("AABB", "AABB"), ("abac", "ABAC"), (" A ", "A"), ("ABCDEFGH", "ABCDEFGH")])
def test_forms_are_letters_brought_in_order(text, form):
    assert parse_form(text) == form


@pytest.mark.parametrize("text", ["", "BA", "AC", "AABBCCDDA", "A1", "A-B"])
def test_bad_forms_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match="AABB"):
        parse_form(text)


@pytest.mark.parametrize("form", ["AABB", "ABAC", "AAB", "ABCD", "A"])
def test_the_written_form_is_read_off_the_recorded_sections(form):
    assert written_form(tune(form)) == form


def test_sections_snap_to_bar_lines_and_a_melody_without_them_is_one_section():
    melody = tune("AABB")
    assert section_bar_ranges(melody) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    nudged = Melody(melody.notes, melody.time_signature, sections=(0, 4 * BAR - 5, 8 * BAR + 3, 12 * BAR))
    assert section_bar_ranges(nudged) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert section_bar_ranges(Melody(melody.notes)) == [(0, 16)]


def test_a_varied_second_ending_is_still_the_same_letter_and_keeps_the_form():
    melody = tune("AABB", section_bars=8)
    ending = [n for n in melody.notes if not 15 * BAR <= n.onset < 16 * BAR]  # the last bar of the second A
    varied = Melody((*ending, Note(50, 15 * BAR, BAR)), (4, 4), sections=melody.sections)
    varied = Melody(tuple(sorted(varied.notes, key=lambda n: n.onset)), (4, 4), sections=melody.sections)
    assert written_form(varied) == "AABB"
    assert form_adherence(varied, "AABB", 8, varied_bars=1)
    assert not form_adherence(varied, "AABB", 8, varied_bars=0)  # an exact repeat was asked for


def test_adherence_fails_when_new_letters_bring_the_same_material():
    assert form_adherence(tune("AABB"), "AABB", 4)
    assert not form_adherence(tune("AAAA"), "AABB", 4)
    assert not form_adherence(tune("ABAB"), "AABB", 4)


def test_the_style_profile_counts_forms_section_lengths_repeats_and_endings():
    melodies = [tune("AABB", seed=1), tune("AABB", seed=2), tune("ABAC", seed=3), Melody(tune("A").notes)]
    profile = form_profile("hand_made", melodies)
    assert profile.melodies == 4 and profile.with_sections == 3
    assert profile.forms == {"AABB": 2, "ABAC": 1}
    assert profile.section_bars == (4,) * 12
    # AABB repeats 8 of its 15 later bars at least; the through-composed strain far fewer
    assert profile.repetition == pytest.approx(sum(repetition_ratio(m) for m in melodies) / 4)
    assert repetition_ratio(melodies[0]) >= 8 / 15 > repetition_ratio(melodies[3])
    assert profile.tune_end_tonic == 1.0  # every hand-made tune ends on C in C major


def test_close_on_tonic_holds_the_tonic_for_the_last_beat():
    melody = Melody((Note(64, 0, 36), Note(67, 36, 6), Note(65, 42, 6)), (4, 4), "C major")
    closed = close_on_tonic(melody)
    assert closed.end == melody.end and closed.notes[-1] == Note(60, 36, 12)  # nearest C to the E before it
    assert closed.notes[0] == Note(64, 0, 36)
    held = Melody((Note(64, 0, 36), Note(72, 36, 12)), (4, 4), "C major")
    assert close_on_tonic(held) == held
    jig = Melody((Note(62, 0, 30), Note(64, 30, 6)), (6, 8), "D major")
    assert close_on_tonic(jig).notes[-1] == Note(62, 36 - beat_ticks((6, 8)), beat_ticks((6, 8)))


def test_a_copied_section_moves_to_its_new_bars_and_is_cut_at_its_end():
    melody = Melody((Note(60, 0, 12), Note(62, 36, 24), Note(64, 60, 36)), (4, 4))
    assert section_slice(melody, 0, 1, 2) == (Note(60, 96, 12), Note(62, 132, 12))


@pytest.fixture(scope="module")
def shipped():
    return MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")


@pytest.mark.parametrize("form, section_bars, variation", [("AABB", 4, 0.0), ("ABAC", 2, 0.5), ("AABA", 4, 0.25)])
def test_sampled_tunes_keep_their_form_and_close_on_a_held_tonic(shipped, form, section_bars, variation):
    requests = [SampleRequest(style, seed, bars=len(form) * section_bars, form=form, section_bars=section_bars,
                              variation=variation) for seed, style in enumerate(("irish_folk", "german_folk") * 3)]
    pickups = 0
    for out in shipped.generate(requests):
        melody, request = out.melody, out.request
        pickup = pickup_bars(melody, section_bars)  # a pickup bar opens the tune ahead of whole sections
        pickups += pickup
        assert melody.n_bars == len(form) * section_bars + pickup
        assert pickup or melody.notes[0].onset == 0  # otherwise it opens on a note
        assert form_adherence(melody, form, section_bars, varied_bars(request)), (form, request.seed)
        whole = [(a + pickup, b + pickup) for a, b in fixed_bar_ranges(len(form), section_bars)]
        assert form_letters(melody, whole) == form
        last = melody.notes[-1]
        assert scale_degree(last.pitch, melody.key) == 1 and 2 * last.duration >= beat_ticks(melody.time_signature)
        assert melody.sections == tuple((i * section_bars + pickup if i else 0) * melody.bar_ticks
                                        for i in range(len(form)))
        assert melody.meta["style"] == request.style
    assert 0 < pickups < len(requests)


def test_a_formed_tune_is_the_same_whatever_its_batch(shipped):
    ask = dict(bars=12, form="ABA", section_bars=4)
    alone = shipped.generate([SampleRequest("irish_folk", 5, **ask)])[0].melody
    batch = shipped.generate([SampleRequest("german_folk", 1, bars=3), SampleRequest("irish_folk", 4, **ask),
                              SampleRequest("irish_folk", 5, **ask)])
    assert batch[2].melody.notes == alone.notes
    assert batch[1].melody.notes != alone.notes


@pytest.mark.parametrize("fields, message", [
    (dict(bars=16, form="AABB", section_bars=8), "4 sections of 8 bars is 32 bars"),
    (dict(bars=64 + 8, form="ABCDEFGHA", section_bars=8), "bars must be between"),
    (dict(bars=8, form="AB", section_bars=4, variation=1.5), "variation must be between"),
    (dict(bars=8, form="BA", section_bars=4), "starts with A"),
    (dict(bars=8, form="AB", section_bars=4, primer=Melody((Note(60, 0, 4 * BAR),))), "fit in the first section"),
])
def test_a_bad_form_request_says_what_is_wrong(fields, message):
    with pytest.raises(ValueError, match=message):
        SampleRequest(STYLES[0], 0, **fields)


def test_generate_writes_a_tune_in_the_asked_form_and_records_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--style", "irish_folk", "--form", "aabb", "--section-bars", "4", "--variation",
                 "0.25", "--format", "mid,json", "--out", str(out)]) == 0
    data = json.loads((out / "irish_folk-0.json").read_text())
    pickup = data["notes"][0]["onset_ticks"] > 0  # a pickup bar comes ahead of the 4 whole sections
    assert data["bars"] == 16 + pickup
    assert {k: data["meta"][k] for k in ("form", "section_bars", "variation")} == {
        "form": "AABB", "section_bars": 4, "variation": 0.25}
    assert main(["generate", "--style", "irish_folk", "--variation", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "give a form too" in capsys.readouterr().err


@pytest.mark.parametrize("form, section_bars, variation, signs", [
    ("AABB", 4, 0.0, ["|:", ":||:", ":|"]),
    ("AABB", 4, 0.25, ["|:", "|1", ":|2"]),
    ("ABAC", 2, 0.0, []),
])
def test_abc_writes_a_returning_section_once_between_repeat_signs(shipped, form, section_bars, variation, signs):
    from music21 import converter

    from musicgen.music.abc import to_abc

    request = SampleRequest("irish_folk", 3, bars=len(form) * section_bars, form=form, section_bars=section_bars,
                            variation=variation)
    melody = shipped.generate([request])[0].melody
    text = to_abc(melody, "formed")
    body = text.split("K:", 1)[1]
    assert all(sign in body for sign in signs), text
    assert (":|" in body) == bool(signs), text
    played = converter.parse(text, format="abc").expandRepeats().flatten().notes  # as a reader plays it
    assert [n.pitch.midi for n in played if n.tie is None or n.tie.type == "start"] == [n.pitch for n in melody.notes]


def test_a_loop_is_marked_in_midi_and_its_wav_is_exactly_its_bars(tmp_path):
    import io
    import wave

    import symusic

    from musicgen.music.export import to_midi_bytes, to_wav_bytes, wav_available
    from musicgen.music.midi import LOOP_MARKERS

    loop = Melody((Note(62, 6, 30), Note(64, 36, 12), Note(60, 48, 42)), (4, 4), "C major", 120.0,
                  meta={"style": "irish_folk", "loop": True})
    score = symusic.Score.from_midi(to_midi_bytes(loop))
    assert [(m.time / score.ticks_per_quarter, m.text) for m in score.markers] == [(0, LOOP_MARKERS[0]),
                                                                                  (8, LOOP_MARKERS[1])]
    if not wav_available():
        pytest.skip("no fluidsynth/soundfont here")
    with wave.open(io.BytesIO(to_wav_bytes(loop))) as wav:
        assert wav.getnframes() == 4 * wav.getframerate()  # two 4/4 bars at 120 quarters a minute: 4 s


def test_a_tune_with_a_pickup_keeps_its_form_and_its_section_ends_before_each_pickup():
    """As ingest writes an AABB reel with a one-beat pickup: sections start at each strain's pickup."""
    plain = tune("AABB")
    pickup = 36  # the strain starts on the last beat of bar 0
    notes = tuple(Note(n.pitch, n.onset + pickup, n.duration) for n in plain.notes)
    melody = Melody(notes, (4, 4), "C major", sections=tuple(t + pickup for t in plain.sections))
    assert section_bar_ranges(melody) == [(0, 5), (5, 9), (9, 13), (13, 17)]  # the pickup bar joins the first A
    assert written_form(melody) == "AABB"
    profile = form_profile("pickups", [melody])
    assert profile.forms == {"AABB": 1}
    ends = [max((n for n in notes if n.onset < t), key=lambda n: n.onset) for t in melody.sections[1:]]
    assert profile.section_end_long == sum(2 * n.duration >= 12 for n in ends) / 3


def test_choosing_an_ending_does_not_choose_the_meter_or_key(shipped, monkeypatch):
    from musicgen.sampling import form

    requests = [SampleRequest("german_folk", s, bars=4, form="A", section_bars=4) for s in range(12)]
    drawn = [(o.melody.time_signature, o.melody.key) for o in shipped.generate(requests)]
    assert len(set(drawn)) > 1
    score = form.cadence_score  # an ending judge that likes one meter and one key above everything
    monkeypatch.setattr(form, "cadence_score", lambda m, end, final: score(m, end, final)
                        + 10 * (m.time_signature == (4, 4)) + 10 * (m.key == "C major"))
    assert [(o.melody.time_signature, o.melody.key) for o in shipped.generate(requests)] == drawn


def test_a_pickup_bar_comes_before_whole_sections_and_before_the_first_repeat_sign(shipped):
    from musicgen.music.abc import to_abc

    tunes = shipped.generate([SampleRequest("german_folk", s, bars=8, form="AB", section_bars=4) for s in range(8)])
    loops = shipped.generate([SampleRequest("german_folk", s, bars=4, loop=True) for s in range(8)])
    assert sum(pickup_bars(o.melody, 4) for o in tunes) >= 4, "German songs mostly open with a pickup"
    assert all(o.melody.notes[0].onset == 0 and o.melody.n_bars == 4 for o in loops)  # no rest at a seam
    aa = next(o.melody for o in shipped.generate([SampleRequest("irish_folk", s, bars=8, form="AA", section_bars=4)
                                                    for s in range(8)]) if pickup_bars(o.melody, 4))
    body = to_abc(aa).split("K:", 1)[1].split("\n", 1)[1]
    assert body.startswith("z") and body.count("|:") == 1 and body.index("|") == body.index("|:")  # after the pickup
    assert form_adherence(aa, "AA", 4)


def test_a_tune_as_long_as_a_request_may_be_opens_on_a_note(shipped):
    """A pickup bar ahead of 64 bars of sections would make a tune longer than any request may ask for
    (and its last new section a request of 65 bars): such a tune opens on a note instead."""
    from musicgen.sampling.sampler import MAX_BARS

    asks = [SampleRequest("german_folk", s, bars=MAX_BARS, form="AB", section_bars=MAX_BARS // 2) for s in range(3)]
    assert sum(pickup_bars(o.melody, 4) for o in shipped.generate(
        [replace(r, bars=8, section_bars=4) for r in asks])) >= 1, "these seeds open with a pickup otherwise"
    for out in shipped.generate(asks):
        assert out.melody.n_bars == MAX_BARS and out.melody.notes[0].onset == 0


def test_a_tune_does_not_end_on_an_upbeat_after_a_rest():
    from musicgen.music.form import cadence_score, rest_before

    upbeat = Melody((Note(64, 0, 24), Note(67, 24, 12), Note(60, 42, 6)), (4, 4), "C major")  # E2 G z C
    assert rest_before(upbeat, upbeat.notes[-1]) == 36 and cadence_score(upbeat, 48, final=True) == 1
    arrival = Melody((Note(64, 0, 24), Note(67, 24, 12), Note(60, 36, 6)), (4, 4), "C major")
    assert rest_before(arrival, arrival.notes[-1]) is None and cadence_score(arrival, 48, final=True) == 3
    closed = close_on_tonic(upbeat)  # the tonic takes the rest before the last beat too
    assert closed.notes == (Note(64, 0, 24), Note(67, 24, 12), Note(72, 36, 12))  # the C nearest the G


def test_an_upbeat_of_several_notes_after_a_rest_is_not_an_ending_either():
    from musicgen.music.form import rest_before

    # B2 G2 z2 FF in F major: the last F follows an F, but both come after the bar's rest
    upbeat = Melody((Note(70, 0, 12), Note(67, 12, 12), Note(65, 36, 6), Note(65, 42, 6)), (4, 4), "F major")
    assert rest_before(upbeat, upbeat.notes[-1]) == 24
    assert close_on_tonic(upbeat).notes == (Note(70, 0, 12), Note(67, 12, 12), Note(65, 24, 24))
    tied = Melody((Note(65, 0, 60), Note(65, 60, 12), Note(65, 72, 12), Note(65, 84, 12)), (4, 4), "F major")
    assert rest_before(tied, tied.notes[-1]) is None  # a note held over the bar line is no rest
    early = Melody((Note(67, 0, 12), Note(69, 24, 12), Note(65, 36, 12)), (4, 4), "F major")  # G2 z2 A2 F2
    assert rest_before(early, early.notes[-1]) == 12
    assert close_on_tonic(early).notes == (Note(67, 0, 12), Note(65, 12, 36))  # the tonic from the rest on
