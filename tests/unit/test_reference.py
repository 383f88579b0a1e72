"""The copy-check reference index (``musicgen.evaluation.reference``) the bulk job builds from the shards."""

from __future__ import annotations

import random

import pytest

from musicgen.data import shards
from musicgen.evaluation.novelty import IntervalIndex
from musicgen.evaluation.reference import reference_index, reference_pitches, reference_splits, timed_reference_index
from musicgen.tokenizers import AbcTokenizer, EventTokenizer
from tests.conftest import STYLES, hymn, jig, write_shards


@pytest.mark.parametrize("tok", [EventTokenizer(STYLES), AbcTokenizer(STYLES)], ids=["events", "abc"])
def test_the_index_covers_every_split_and_reads_pitches_off_the_tokens(tmp_path, tok):
    rng = random.Random(5)
    melodies = {"train": [jig(rng) for _ in range(8)], "val": [hymn(rng) for _ in range(3)],
                "test": [jig(rng) for _ in range(3)]}
    root = str(tmp_path)
    write_shards(root, tok, {(split, STYLES[0]): items for split, items in melodies.items()})
    assert reference_splits(root) == list(shards.COPY_CHECK_SPLITS)

    table = shards.read_split(root, "train", ("tokens",))
    decoded = [[n.pitch for n in tok.decode(t)[0].notes] for t in table.column("tokens").to_pylist()]
    assert [p.tolist() for p in reference_pitches(tok, table.column("tokens"))] == decoded

    index, size, seconds = timed_reference_index(root, min_run=8)
    assert size == len(index) == sum(map(len, melodies.values())) and seconds >= 0
    assert isinstance(reference_index(root, 8), IntervalIndex)
    copied = melodies["val"][1]  # a validation melody is as much a copy as a training one
    run = index.longest_shared_run(copied)
    assert run.length == len(copied.notes) - 1 and run.id == f"val-{STYLES[0]}-1"


def test_no_shards_is_an_error_before_anything_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preprocessed melodies"):
        reference_splits(str(tmp_path))
