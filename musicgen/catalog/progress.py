"""The bulk job's progress, saved so a rerun goes on where a run stopped.

``<out>/progress.json`` holds the settings, the round's plan and how much of it is decided;
``<out>/progress/`` the records of the melodies accepted and rejected, a part per save. Both are
written atomically, the part first: a kill between the two leaves a part the state does not count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from musicgen import storage
from musicgen.catalog.layout import PROGRESS

DECIDED = "progress"  # folder of the decided melodies' records: part k holds those decided since save k - 1


@dataclass
class Progress:
    """What a rerun needs to go on where a run stopped: ``<out>/progress.json``, and the decided
    melodies' records in ``<out>/progress/`` (each save adds a part with the new ones, so a save
    costs its news, not the whole catalog so far)."""

    settings: dict
    next_seed: dict[str, int]
    decided_upto: dict[str, int | None]  # per style: every planned seed up to this one is decided
    round: int = 0
    plan: list[list] = field(default_factory=list)  # this round's [style, seed] requests, in batch order
    done_batches: int = 0  # leading batches of the plan whose melodies are all decided
    parts: int = 0  # parts of <out>/progress/ this state includes (a part written after it is ignored)
    accepted: list[dict] = field(default_factory=list)  # manifest records, plus each melody's pitches
    rejected: list[dict] = field(default_factory=list)
    saved: tuple[int, int] = (0, 0)  # how many of accepted and rejected are in those parts


SAVED_STATE = ("settings", "next_seed", "decided_upto", "round", "plan", "done_batches", "parts")


def load_progress(out: str, settings: dict) -> Progress:
    """The saved progress of a catalog in ``out`` made with the same settings, or a fresh start."""
    uri = storage.join(out, PROGRESS)
    styles = settings["styles"]
    if not storage.exists(uri):
        return Progress(settings, {s: settings["seed"] for s in styles}, dict.fromkeys(styles))
    saved = storage.read_json(uri)
    wanted = json.loads(json.dumps(settings))
    if saved["settings"] != wanted:
        differ = sorted(k for k in wanted.keys() | saved["settings"].keys()
                        if wanted.get(k) != saved["settings"].get(k))
        raise ValueError(f"{out} holds a catalog made with other settings (differing: {', '.join(differ)}); "
                         "rerun with the same settings to finish it, or choose another --out")
    progress = Progress(**{k: saved[k] for k in SAVED_STATE})
    for part in range(progress.parts):
        decided = storage.read_json(storage.join(out, DECIDED, f"{part:06d}.json"))
        progress.accepted += decided["accepted"]
        progress.rejected += decided["rejected"]
    progress.saved = (len(progress.accepted), len(progress.rejected))
    return progress


def save_progress(out: str, progress: Progress) -> None:
    """The records decided since the last save as a new part, then the state that counts it (a
    kill between the two leaves a part the state does not count, which the next save replaces)."""
    accepted, rejected = progress.saved
    if len(progress.accepted) > accepted or len(progress.rejected) > rejected:
        news = {"accepted": progress.accepted[accepted:], "rejected": progress.rejected[rejected:]}
        part = storage.join(out, DECIDED, f"{progress.parts:06d}.json")
        storage.write_bytes(part, json.dumps(news, separators=(",", ":")).encode())
        progress.parts += 1
        progress.saved = (len(progress.accepted), len(progress.rejected))
    state = {k: getattr(progress, k) for k in SAVED_STATE}
    storage.write_bytes(storage.join(out, PROGRESS), json.dumps(state, separators=(",", ":")).encode())
