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
