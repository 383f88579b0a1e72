"""The bulk job's saved progress: each save adds only the records decided since the last one."""

import json

from musicgen.catalog.progress import DECIDED, load_progress, save_progress

SETTINGS = {"styles": ["bach", "irish"], "seed": 0, "per_style": 3}


def record(style: str, seed: int) -> dict:
    return {"id": f"{style}-{seed}", "style": style, "seed": seed, "pitches": [60, 62, 64]}


def test_saves_add_parts_with_only_the_news_and_a_rerun_reads_them_all_back(tmp_path):
    out = str(tmp_path)
    progress = load_progress(out, SETTINGS)
    assert progress.accepted == [] and progress.next_seed == {"bach": 0, "irish": 0}
    progress.accepted += [record("bach", 0), record("irish", 0)]
    progress.rejected.append({**record("bach", 1), "reason": "too_short"})
    save_progress(out, progress)
    save_progress(out, progress)  # nothing new: no new part
    progress.accepted.append(record("bach", 2))
    progress.next_seed["bach"] = 3
    save_progress(out, progress)

    parts = sorted((tmp_path / DECIDED).iterdir())
    assert [p.name for p in parts] == ["000000.json", "000001.json"]
    assert json.loads(parts[1].read_text()) == {"accepted": [record("bach", 2)], "rejected": []}
    assert "accepted" not in json.loads((tmp_path / "progress.json").read_text())

    resumed = load_progress(out, SETTINGS)
    assert resumed.accepted == progress.accepted and resumed.rejected == progress.rejected
    assert resumed.next_seed == {"bach": 3, "irish": 0} and resumed.saved == (3, 1)


def test_a_part_written_after_the_last_saved_state_is_ignored_and_replaced(tmp_path):
    """A kill between writing a part and the state that counts it must not double its records."""
    out = str(tmp_path)
    progress = load_progress(out, SETTINGS)
    progress.accepted.append(record("bach", 0))
    save_progress(out, progress)
    (tmp_path / DECIDED / "000001.json").write_text(json.dumps({"accepted": [record("bach", 9)], "rejected": []}))

    resumed = load_progress(out, SETTINGS)
    assert resumed.accepted == [record("bach", 0)]
    resumed.accepted.append(record("bach", 1))
    save_progress(out, resumed)
    assert load_progress(out, SETTINGS).accepted == [record("bach", 0), record("bach", 1)]


def test_a_round_is_cut_into_calls_that_spread_a_small_plan_and_resume_the_same():
    from musicgen.catalog.bulk import MIN_BLOCK, SPREAD, plan_blocks

    for size, batch in [(220, 512), (1300, 512), (20_000, 512), (7, 2), (5, 512)]:
        plan = [["irish_folk", seed] for seed in range(size)]
        blocks = plan_blocks(plan, batch, size)
        assert [r for b in blocks for r in b] == plan  # every request once, in order
        assert all(len(b) <= batch for b in blocks)
        assert not any(b[0][1] // batch != b[-1][1] // batch for b in blocks)  # never across a batch
        if size >= SPREAD * MIN_BLOCK:
            assert len(blocks) >= SPREAD
        for done in range(0, size, batch):  # a resumed round starts at a batch: the same calls
            tail = [b for b in blocks if b[0][1] >= done]
            assert plan_blocks(plan[done:], batch, size) == tail
    assert len(plan_blocks([["s", i] for i in range(220)], 512, 220)) == 7  # not one call on one actor
