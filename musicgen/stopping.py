"""Stopping cleanly on SIGTERM and SIGINT: within seconds, with exit code 143 or 130, and with the
local Ray cluster shut down.

Left alone, a driver stops badly: Ray's own SIGTERM handler exits from wherever the main thread
happens to be (inside ``trainer.fit()`` that ends in Ray's crash handler, exit 134), and a start
that stalls never answers at all. Here the first signal raises ``KeyboardInterrupt`` in the main
thread, so the command unwinds (``finally`` blocks run, the catalog's progress is saved) and
``musicgen.cli`` shuts Ray down; and it arms a deadline: if the process is still alive
``MUSICGEN_STOP_DEADLINE_S`` later (default 8 s), or a second signal comes, it exits at once.
The processes of a local cluster die with it (Ray starts them to share the driver's fate).
Every command keeps its work resumable, so a rerun of the same command carries on.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

DEADLINE_ENV = "MUSICGEN_STOP_DEADLINE_S"
DEFAULT_DEADLINE_S = 8  # a stop that takes longer ends at once (os._exit) this long after the signal
# Ray Data's executor threads (ray.data's StreamingExecutor names them so), and how long a stop waits
# for them to see it: their own shutdown waits 2 s for them, and may give up first
RAY_DATA_THREADS = "StreamingExecutor-"
RAY_DATA_JOIN_S = 4.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []
_deadlines: list[threading.Timer] = []


def run(command: Callable[[], int]) -> int:
    """Run a command that a signal stops cleanly: its exit code, or 143/130 when a signal stopped it.
    The handlers before it are restored after (``main`` also runs inside tests and notebooks)."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _received.clear()
    _deadlines.clear()
    install()
    try:
        return command()
    except KeyboardInterrupt:
        return _shut_down(received() or signal.SIGINT)
    except SystemExit as exc:  # Ray's handler, active while ray.init runs: sys.exit(SIGTERM)
        if exc.code != signal.SIGTERM:
            raise
        return _shut_down(signal.SIGTERM)
    finally:
        for timer in _deadlines:  # stopped in time: the caller (a test, a notebook) lives on
            timer.cancel()
        if threading.current_thread() is threading.main_thread():
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def install() -> None:
    """Handle SIGTERM and SIGINT from now on (again after ``ray.init``, which sets its own)."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _on_signal)


def handles(signum: int) -> bool:
    """Whether this module's handler answers ``signum`` now (a library that would install its own defers)."""
    return signal.getsignal(signum) is _on_signal


def _shut_down(signum: int) -> int:
    """Disconnect from Ray: a local cluster stops, a joined one ends this driver's job."""
    import ray

    if ray.is_initialized():
        join_threads(RAY_DATA_THREADS, RAY_DATA_JOIN_S)
        ray.shutdown()
    return exit_code(signum)


def join_threads(prefix: str, timeout: float) -> None:
    """Wait, up to ``timeout`` seconds in all, for the other threads whose name starts with ``prefix``
    to end. A Ray Data executor thread that calls into Ray after ``ray.shutdown()`` makes Ray's core
    worker end the whole process with exit code 1 instead of the signal's; one that does not end in
    time is left to the deadline, which exits with the signal's code."""
    end = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread is not threading.current_thread():
            thread.join(max(0.0, end - time.monotonic()))


def received() -> int | None:
    """The signal that asked the command to stop, if one did."""
    return _received[0] if _received else None


def exit_code(signum: int) -> int:
    return 128 + signum  # what a shell reports for a process a signal ended: 143 SIGTERM, 130 SIGINT


def _on_signal(signum: int, frame: object) -> None:
    if _received:  # a second signal: no more waiting
        os._exit(exit_code(_received[0]))
    _received.append(signum)
    deadline = float(os.environ.get(DEADLINE_ENV, DEFAULT_DEADLINE_S))
    timer = threading.Timer(deadline, os._exit, args=(exit_code(signum),))
    timer.daemon = True
    timer.start()
    _deadlines.append(timer)
    print(f"\nmusicgen: {signal.Signals(signum).name}: stopping (exit within {deadline:g} s); "
          "rerun the same command to carry on", file=sys.stderr, flush=True)
    raise KeyboardInterrupt
