"""Bars sampled as copies of earlier bars (``SampleRequest.copies``, ``musicgen.sampling.copies``)."""

from __future__ import annotations

import pytest

from musicgen.music.metrics import bar_self_similarity, repeated_bars
from musicgen.sampling import MelodyGenerator, SampleRequest

PLAN = ((2, 0), (3, 1), (6, 2), (9, 4))


@pytest.fixture(scope="module")
def generator() -> MelodyGenerator:
    """The shipped model: an untrained one holds nearly every note across a bar line, so no bar is whole."""
    return MelodyGenerator.from_artifact("pretrained", device="cpu", precision="fp32")


def _crossed(melody, line: int) -> bool:
    """Whether a note sounds across bar line ``line``."""
    tick = line * melody.bar_ticks
    return any(n.onset < tick < n.onset + n.duration for n in melody.notes)


def test_a_planned_bar_repeats_its_source_wherever_both_are_whole_bars(generator):
    made = 0
    for seed in range(12):
        melody = generator.generate([SampleRequest("irish_folk", seed, bars=12, copies=PLAN)])[0].melody
        pairs = set(repeated_bars(bar_self_similarity(melody)))
        for bar, source in PLAN:
            whole = not any(_crossed(melody, line) for line in (source, source + 1, bar))
            if whole:
                assert (bar, source) in pairs or any(b == bar for b, _ in pairs), (seed, bar, source)
                made += 1
    assert made >= 24  # the trained model's bars are mostly whole


def test_copies_depend_on_the_row_alone_not_on_its_batch(generator):
    target = SampleRequest("german_folk", 5, bars=10, copies=PLAN)
    alone = generator.generate([target])[0]
    assert set(PLAN) & set(repeated_bars(bar_self_similarity(alone.melody)))  # it did copy
    others = [SampleRequest("irish_folk", s, bars=b) for s, b in ((1, 4), (2, 12), (3, 7))]
    batched = generator.generate([others[0], target, *others[1:]])[1]
    assert batched.tokens == alone.tokens


def test_the_last_bar_is_copied_too_and_the_melody_still_ends_there_and_bad_copies_are_refused(generator):
    whole = 0
    for seed in range(6):
        melody = generator.generate([SampleRequest("irish_folk", seed, bars=4, copies=((3, 0),))])[0].melody
        assert melody.end == 4 * melody.bar_ticks
        if not any(_crossed(melody, line) for line in (1, 3)):
            assert bar_self_similarity(melody)[3, 0] == 1.0, seed
            whole += 1
    assert whole
    for copies in (((2, 2),), ((1, 3),), ((5, 0),), ((-1, 0),)):
        with pytest.raises(ValueError, match="copies"):
            SampleRequest("irish_folk", 0, bars=4, copies=copies)


def test_a_new_section_borrows_fewer_than_half_its_bars_from_other_letters():
    from musicgen.sampling.form import section_copies

    request = SampleRequest("irish_folk", 0, form="AABB", section_bars=8, bars=32,
                            copies=((3, 1), (17, 1), (18, 2), (19, 3), (20, 4), (21, 17), (26, 2)))
    assert section_copies(request, 0, 8) == ((3, 1),)
    # B (bars 16-23) takes three bars from A, not a fourth, and any from itself
    assert section_copies(request, 16, 24) == ((17, 1), (18, 2), (19, 3), (21, 17))
    assert section_copies(request, 24, 32) == ((26, 2),)  # a varied return's bars (fewer than half borrowed)


def test_after_a_pickup_bar_copies_keep_their_places_in_the_sections():
    from musicgen.sampling.form import section_copies

    whole_first_bar = SampleRequest("irish_folk", 0, form="AB", section_bars=4, bars=8, copies=((2, 0), (6, 4)))
    assert section_copies(whole_first_bar, 0, 5, pickup=1) == ((3, 1),)  # not bar 0, the pickup's rest
    assert section_copies(whole_first_bar, 5, 9, pickup=1) == ((7, 5),)
    with_its_pickup = SampleRequest("irish_folk", 0, form="AB", section_bars=4, bars=8, copies=((3, 1), (7, 5)))
    assert section_copies(with_its_pickup, 0, 5, pickup=1) == ((3, 1),)
    assert section_copies(with_its_pickup, 5, 9, pickup=1) == ((7, 5),)
