"""Loops: the seam from a loop's end back into its start (the interval it aims at, the last bar sampled
again, the last note moved), and the phrase a loop sampled whole starts at."""

from __future__ import annotations

import pytest

from musicgen.music.form import held, scale_degree
from musicgen.music.loop import lead_into_start, loop_starts, rotated, seam_interval, seam_score
from musicgen.music.melody import Melody, Note
from musicgen.sampling import MelodyGenerator, SampleRequest
from musicgen.sampling.form import seam_target

BAR = 48  # ticks of a 4/4 bar


@pytest.fixture(scope="module")
def shipped():
    return MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")


def test_a_loop_leads_back_into_its_start_better_than_a_tune_does(shipped):
    seeds = range(8)
    loops = shipped.generate([SampleRequest("irish_folk", s, bars=8, loop=True) for s in seeds])
    tunes = shipped.generate([SampleRequest("irish_folk", s, bars=8) for s in seeds])
    assert any(t.melody.notes[0].onset > 0 for t in tunes), "a plain tune may open with a pickup"
    own = 0
    for out in loops:
        melody = out.melody
        assert melody.end == 8 * melody.bar_ticks and melody.meta["loop"] is True  # whole bars, marked
        assert melody.notes[0].onset == 0  # it opens on a note: no silence at the seam
        assert abs(seam_interval(melody)) <= 12, melody.notes[-1]
        own += seam_interval(melody) in {b.pitch - a.pitch for a, b in zip(melody.notes, melody.notes[1:])}
    assert own >= 6, "the seam takes an interval the line itself takes"
    def full_stop(melody) -> bool:
        return scale_degree(melody.notes[-1].pitch, melody.key) == 1 and held(melody.notes[-1], melody)

    assert sum(full_stop(o.melody) for o in loops) < max(1, sum(full_stop(o.melody) for o in tunes))


def recorded_targets(monkeypatch) -> list[int | None]:
    """The interval each loop's seam aims at, in the order the sampler draws them (``seam_target``)."""
    from musicgen.sampling import form

    targets = []
    draw = form.seam_target
    monkeypatch.setattr(form, "seam_target", lambda candidates, seed: targets.append(draw(candidates, seed)) or
                        targets[-1])
    return targets


def test_a_loop_whose_seam_missed_its_interval_samples_its_last_bar_again(shipped, monkeypatch):
    from musicgen.sampling import form

    requests = [SampleRequest(style, s, bars=4, loop=True) for s in range(12)
                for style in ("irish_folk", "german_folk")]
    targets = recorded_targets(monkeypatch)
    aimed = [o.melody for o in shipped.generate(requests)]
    aimed_targets, targets[:] = list(targets), []
    monkeypatch.setattr(form, "_aim_seams", lambda *args: {})
    plain = [o.melody for o in shipped.generate(requests)]
    assert targets == aimed_targets, "the same candidates, the same intervals aimed at"
    for a, p, target in zip(aimed, plain, targets):
        end, last_bar = 4 * a.bar_ticks, 3 * a.bar_ticks
        assert a.end <= end and seam_score(a, end, target) >= seam_score(p, end, target)
        if a != p:  # only the last bar was sampled again
            assert [n for n in a.notes if n.onset < last_bar] == [
                n._replace(duration=min(n.duration, last_bar - n.onset)) for n in p.notes if n.onset < last_bar]
    hits = [sum(seam_interval(m) == t for m, t in zip(loops, targets)) for loops in (aimed, plain)]
    assert hits[0] > hits[1], hits


def test_a_seam_aims_at_an_interval_its_lines_take():
    def loop(last: int) -> Melody:  # C major, opens on E, its last note `last`, short (no full stop)
        return Melody((Note(64, 0, BAR // 2), Note(62, BAR // 2, BAR // 4), Note(last, 3 * BAR // 4, BAR // 4)),
                      (4, 4), "C major")

    # a seam of a third down (G to E) scores highest when a third down is the target, a step when none is
    assert seam_score(loop(67), BAR, target=-3) > seam_score(loop(65), BAR, target=-3)
    assert seam_score(loop(65), BAR) > seam_score(loop(67), BAR)
    lines = [loop(67), loop(60)]
    drawn = [seam_target(lines, seed) for seed in range(400)]  # the lines' intervals: -2, +5, -2, -2
    assert set(drawn) == {-2, 5} and 0.2 < drawn.count(5) / 400 < 0.3
    assert seam_target(lines, 3) == seam_target(lines, 3) and seam_target([], 0) is None


def test_a_loop_that_missed_its_seam_moves_its_last_note_only_where_the_line_allows():
    def loop(*pitches: int, last_duration: int = BAR // 4) -> Melody:  # C major, opens on the first pitch
        step = (BAR - last_duration) // (len(pitches) - 1)
        notes = [Note(p, i * step, step) for i, p in enumerate(pitches[:-1])]
        return Melody((*notes, Note(pitches[-1], BAR - last_duration, last_duration)), (4, 4), "C major")

    plain = loop(64, 67, 62, 65)  # E G D F: seam F to E, -1; largest leap a fourth (5)
    moved = lead_into_start(plain, BAR, target=-3)  # a third down into E: from G
    assert seam_interval(moved, BAR) == -3 and moved.notes[:-1] == plain.notes[:-1]
    assert moved.notes[-1] == plain.notes[-1]._replace(pitch=67)
    assert lead_into_start(plain, BAR, target=-1) == plain  # it already takes the interval
    assert lead_into_start(plain, BAR, target=3) == plain  # C#: off the scale and not the loop's own
    assert lead_into_start(plain, BAR, target=-8) == plain  # the C above: a 7th up from D, its largest leap a 4th
    held_tonic = loop(64, 67, 62, 65, last_duration=BAR // 2)
    assert lead_into_start(held_tonic, BAR, target=4) == held_tonic  # a held C: the full stop a loop avoids
    assert seam_interval(lead_into_start(held_tonic, BAR, target=2), BAR) == 2  # a held D leads on
    assert lead_into_start(Melody((Note(60, 0, BAR),), (4, 4), "C major"), BAR, target=2).notes[0].pitch == 60


def eight_bars(*held_over: int) -> Melody:
    """An 8-bar C major loop of half notes climbing from C, one note held over each bar line in ``held_over``."""
    notes, onset, pitch = [], 0, 60
    while onset < 8 * BAR:
        length = BAR if onset + BAR // 2 in {b * BAR for b in held_over} else BAR // 2
        notes.append(Note(pitch, onset, min(length, 8 * BAR - onset)))
        onset, pitch = onset + length, pitch + 1
    return Melody(tuple(notes), (4, 4), "C major")


def test_a_loop_may_start_at_each_of_its_phrases_that_opens_on_a_note():
    assert loop_starts(eight_bars(), 8) == [0, 4]
    assert loop_starts(eight_bars(4), 8) == [0], "a note held over bar 4 would be cut in two"
    assert loop_starts(eight_bars(), 4) == [0]
    assert loop_starts(eight_bars(), 6) == [0, 4]
    # one that opens with a rest (the ABC grammar does not make loops open on a note) still starts where it was
    late = Melody(tuple(n._replace(onset=n.onset + 6, duration=min(n.duration, 8 * BAR - n.onset - 6))
                        for n in eight_bars(4).notes), (4, 4), "C major")
    assert loop_starts(late, 8) == [0]


def test_a_loop_started_at_its_second_phrase_plays_the_same_notes_round_and_keeps_its_length():
    loop = eight_bars()
    turned = rotated(loop, 4, 8 * BAR)
    assert turned.notes[0] == Note(loop.notes[8].pitch, 0, BAR // 2)  # bar 4's first note opens it
    assert [n.pitch for n in turned.notes] == [n.pitch for n in (*loop.notes[8:], *loop.notes[:8])]
    assert sorted(n.onset for n in turned.notes) == [n.onset for n in turned.notes]
    assert turned.end == loop.end == 8 * BAR and sum(n.duration for n in turned.notes) == 8 * BAR
    # the old seam is inside it now, the new one the step the line took between its phrases
    assert seam_interval(turned) == loop.notes[8].pitch - loop.notes[7].pitch
    assert turned.notes[8].pitch - turned.notes[7].pitch == seam_interval(loop)
    assert rotated(loop, 0, 8 * BAR) == loop
    # notes past the loop's end are cut at it, as a loop's last note is
    long = Melody((*loop.notes[:-1], loop.notes[-1]._replace(duration=BAR)), (4, 4), "C major")
    assert rotated(long, 4, 8 * BAR).end == 8 * BAR


def test_a_loop_sampled_whole_starts_at_the_phrase_whose_seam_comes_nearest_its_aim(shipped, monkeypatch):
    from musicgen.sampling import form

    requests = [SampleRequest(style, s, bars=8, loop=True) for s in range(10)
                for style in ("irish_folk", "renaissance")]
    targets = recorded_targets(monkeypatch)
    monkeypatch.setattr(form, "_aim_seams", lambda *args: {})  # the candidates' own seams, nothing mended
    turned = [o.melody for o in shipped.generate(requests)]
    turned_targets, targets[:] = list(targets), []
    monkeypatch.setattr(form, "loop_starts", lambda melody, bars: [0])
    opened = [o.melody for o in shipped.generate(requests)]
    assert targets == turned_targets, "the same candidates, the same intervals aimed at"
    scores = [[seam_score(m, 8 * m.bar_ticks, t) for m, t in zip(loops, targets)] for loops in (turned, opened)]
    assert all(a >= b for a, b in zip(*scores)) and sum(scores[0]) > sum(scores[1]), scores
    assert any(a != b for a, b in zip(turned, opened)), "some loops start at their second phrase"
    for loop in turned:
        assert loop.notes[0].onset == 0 and loop.end == 8 * loop.bar_ticks  # opens on a note, whole bars
