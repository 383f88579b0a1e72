"""The machine a benchmark's figures come from, as docs/benchmarks.md records it."""

from __future__ import annotations

import contextlib
import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s model name (the CPU differs between machines of the same kind), else the platform's."""
    with contextlib.suppress(Exception):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
