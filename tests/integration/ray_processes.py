"""Which Ray processes a command left running: those that were not there before it started and, when
the command was started with a tag (``tagged_env``), only those that carry its tag.

Other local clusters may run on the machine (other people's, other tests'), and may start while the
command runs: comparing snapshots taken around the command finds the ones started meanwhile, and the
tag (an environment variable that every process of a local cluster inherits from the driver that
started it) keeps only the command's own.
"""

import os
import subprocess
import uuid

RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor", "monitor.py")
TAG_ENV = "MUSICGEN_TEST_PROCESS_TAG"


def tagged_env(env: dict | None = None) -> tuple[dict, str]:
    """``env`` (default: this process's) with a fresh tag, and the tag."""
    tag = uuid.uuid4().hex
    return {**(os.environ if env is None else env), TAG_ENV: tag}, tag


def _has_tag(pid: int, tag: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{TAG_ENV}={tag}".encode() in f.read().split(b"\0")
    except OSError:  # gone meanwhile, or not ours to read
        return False


def ray_pids(tag: str | None = None) -> dict[int, str]:
    """Ray processes still running (with ``tag``: only those that carry it). A zombie (state Z,
    ``<defunct>``) has exited already: it holds no CPU or memory, only its exit status until its
    parent reads it, so it does not count."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pid, state, args = (line.strip().split(None, 2) + ["", ""])[:3]
        if state.startswith("Z"):
            continue
        if any(marker in args for marker in RAY_PROCESS_MARKERS) and "ps -eo" not in args:
            if tag is None or _has_tag(int(pid), tag):
                found[int(pid)] = args
    return found


def left_behind(before: dict[int, str], tag: str | None = None) -> list[str]:
    """Ray processes running now that were not in ``before`` (with ``tag``: only those that carry it)."""
    return [args[:160] for pid, args in ray_pids(tag).items() if pid not in before]
