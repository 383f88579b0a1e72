"""Which Ray processes a command left running: those that were not there before it started.

Other local clusters may run on the machine (other people's, other tests'): comparing
snapshots taken around the command finds only the ones it started.
"""

import subprocess

RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor", "monitor.py")


def ray_pids() -> dict[int, str]:
    """Ray processes still running. A zombie (state Z, ``<defunct>``) has exited already: it holds
    no CPU or memory, only its exit status until its parent reads it, so it does not count."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pid, state, args = (line.strip().split(None, 2) + ["", ""])[:3]
        if state.startswith("Z"):
            continue
        if any(marker in args for marker in RAY_PROCESS_MARKERS) and "ps -eo" not in args:
            found[int(pid)] = args
    return found


def left_behind(before: dict[int, str]) -> list[str]:
    """Ray processes running now that were not in ``before``."""
    return [args[:160] for pid, args in ray_pids().items() if pid not in before]
