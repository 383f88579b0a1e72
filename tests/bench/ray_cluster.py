"""A running local Ray cluster for the benchmarks, as ``ray job submit`` finds a long-running one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def running_cluster(cpus: int, pin: Callable[[], None] | None = None) -> Iterator[None]:
    """``ray start --head`` with ``cpus`` CPUs, then one tiny Ray Data job (which creates Ray Data's two
    per-cluster system actors, ~1.5 s of CPU each here, so the timed jobs do not pay for them);
    ``ray stop --force`` at the end. ``pin`` runs in each child before exec (e.g. to set CPU affinity)."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    subprocess.run([ray_cli, "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false"],
                   preexec_fn=pin, check=True, capture_output=True)
    try:
        warm_up = "import ray; ray.init(address='auto', logging_level='ERROR'); ray.data.range(8).materialize()"
        subprocess.run([sys.executable, "-c", warm_up], preexec_fn=pin, check=True, capture_output=True)
        yield
    finally:
        subprocess.run([ray_cli, "stop", "--force"], check=True, capture_output=True)
