"""Connecting to Ray: the one place that decides between a local cluster and a remote one, and
that makes sure what a job asks for fits the cluster before it asks.

Ray queues a request that no node can satisfy and waits for the cluster to grow; on a fixed
cluster that is forever, with nothing on the screen. So every command states what it needs
(``need``: ``{"CPU": 3}``, ``{"GPU": 2}``): a local cluster musicgen starts is sized to fit it,
and a joined cluster is checked against it first, which turns the hang into an error within
seconds that says what is missing (``ClusterTooSmall``: exit code 2 from the CLI).

It also decides where Ray's own output goes. By default (the library, notebooks, tests) Ray
prints as Ray does. The ``musicgen`` command calls ``set_verbose(args.verbose)``: without
``--verbose`` the lines Ray's driver-side loggers write (Ray Data's execution plans and progress
logs, Train and Serve INFO lines, Ray's own warnings) go to ``musicgen-driver.log`` in the Ray
session's log folder, the workers' output (``(RayTrainWorker pid=...)`` lines, TrainingReport
dicts) stays in that folder's worker-*.out/.err files instead of being streamed to the terminal
(``log_to_driver=False``), and one line says where: ``Ray's logs: <folder>``. Errors still reach
the user: a failed task, worker or training run raises its exception in the driver. One thing
escapes: Ray's C++ core in the driver process writes its ERROR lines straight to file
descriptor 2 (e.g. "has constructor arguments in the object store and max_restarts > 0" when a
Ray Data actor pool starts); they are not Python logging and are left on the terminal.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping

from musicgen import stopping

# Ray's driver-side loggers whose terminal handlers are replaced by the log file when not verbose
# (ray.train/ray.tune propagate to "ray"; ray.data and ray.serve keep handlers of their own)
RAY_LOGGERS = ("ray", "ray.data", "ray.serve", "ray.train", "ray.tune")
DRIVER_LOG = "musicgen-driver.log"
_verbose = True  # the library's default: Ray's output as Ray prints it; the CLI sets it from --verbose

# How long to wait for a joined cluster's autoscaler to add what a job needs (0: fail at once).
WAIT_ENV = "MUSICGEN_CLUSTER_WAIT_S"


class ClusterTooSmall(ValueError):
    """A job needs more than the cluster has and will not get it: it would wait forever."""


def local_cpus(num_cpus: int | None, need: Mapping[str, float] | None, what: str) -> int | None:
    """The CPUs a local cluster starts with: ``num_cpus`` when given (an error when too few), else
    the machine's, or more when ``need`` asks for more. Ray's CPUs are logical: two workers on a
    one-core machine take turns, slower, which beats waiting forever."""
    wanted = math.ceil((need or {}).get("CPU", 0))
    if num_cpus is not None:
        if num_cpus < wanted:
            raise ClusterTooSmall(f"{what} needs {wanted} CPU(s), but --num-cpus is {num_cpus}: give at least "
                                  f"--num-cpus {wanted}, or leave it out and the local cluster is sized to fit")
        return num_cpus
    return max(os.cpu_count() or 1, wanted) if wanted else None


def set_verbose(verbose: bool) -> None:
    """Whether the Ray connections ``init_ray`` makes print Ray's own log lines and worker output
    to the terminal (True, Ray's way) or send them to the session's log folder (False)."""
    global _verbose
    _verbose = verbose


class _RayLogFile(logging.Handler):
    """Ray's driver-side log records, written to ``musicgen-driver.log`` in the session's log
    folder once Ray has started (and so has a session); records from before are held until then."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- "
                                            "%(message)s"))
        self.held: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def open(self, path: str) -> None:
        if self.file is None:
            self.file = logging.FileHandler(path, encoding="utf-8", delay=True)
            self.file.setFormatter(self.formatter)
            for record in self.held:
                self.file.handle(record)
            self.held.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            self.held.append(record)
        else:
            self.file.handle(record)


_log_file = _RayLogFile()


def quiet_ray_loggers() -> None:
    """Not verbose: send Ray's driver-side loggers to the log file instead of the terminal (each
    logger of ``RAY_LOGGERS`` loses its terminal handlers and gets the file's); verbose: nothing.
    Idempotent; call it again after a Ray library (re)configures its logger (``ray.serve`` does)."""
    if _verbose:
        return
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        terminal = [h for h in logger.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in terminal:
            logger.removeHandler(handler)
        if terminal and _log_file not in logger.handlers:
            logger.addHandler(_log_file)


def ray_log_folder() -> str | None:
    """The current Ray session's log folder on this machine (None before ``ray.init``)."""
    import ray

    node = ray._private.worker._global_node
    return os.path.join(node.get_session_dir_path(), "logs") if node is not None else None


def init_ray(num_cpus: int | None = None, need: Mapping[str, float] | None = None, what: str = "this job") -> None:
    """Join the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``), or start a local one; then
    check that ``need`` fits it (``require``).

    ``num_cpus`` only applies to a local cluster: a running cluster's size is its own.
    A local cluster is always a new one (``address="local"``): without it Ray would
    join whatever cluster ``ray start`` left running on the machine. It is shut down
    again when ``need`` cannot fit (a missing GPU), so no Ray process outlives the error.

    Not verbose (``set_verbose``), Ray's log lines and the workers' output go to the session's log
    folder, and the one line ``Ray's logs: <folder>`` goes to stderr. Under ``ray job submit`` the
    same holds, the folder being on the node that runs the job's driver (the head node).
    """
    import ray

    if ray.is_initialized():  # someone else's connection (tests, notebooks): theirs to shut down
        return require(need or {}, what)
    verbose = _verbose
    if not verbose:
        import ray.data  # noqa: F401  (it configures its logger on import: quiet it before it logs)

        quiet_ray_loggers()  # before ray.init: what it logs itself (e.g. the token warning) is kept for the file
    options = {"logging_level": logging.WARNING if verbose else logging.INFO, "log_to_driver": verbose}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**options)
    else:
        ray.init(address="local", num_cpus=local_cpus(num_cpus, need, what), **options)
    if not verbose:
        folder = ray_log_folder()
        if folder:
            _log_file.open(os.path.join(folder, DRIVER_LOG))
            print(f"Ray's logs: {folder} (--verbose prints them here)", file=sys.stderr, flush=True)
    stopping.install()  # ray.init replaced the SIGTERM handler with one that exits from anywhere
    try:
        require(need or {}, what)
    except ClusterTooSmall:
        ray.shutdown()
        raise


def shortfall(need: Mapping[str, float], total: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """``{resource: (needed, there)}`` for each resource ``total`` has too little of."""
    return {k: (v, total.get(k, 0.0)) for k, v in need.items() if v > 0 and total.get(k, 0.0) + 1e-9 < v}


def require(need: Mapping[str, float], what: str, wait_s: float | None = None) -> None:
    """Raise ``ClusterTooSmall`` unless the current cluster has ``need`` in total.

    On a cluster whose autoscaler can add nodes, set ``MUSICGEN_CLUSTER_WAIT_S``: the need is
    then asked of the autoscaler (``request_resources``) and awaited that long before failing.
    Totals, not what is free now: a busy cluster frees its resources, a small one never grows.
    """
    import ray

    missing = shortfall(need, ray.cluster_resources())
    if not missing:
        return
    wait_s = float(os.environ.get(WAIT_ENV, 0)) if wait_s is None else wait_s
    if wait_s > 0:
        from ray.autoscaler.sdk import request_resources

        # one bundle per unit: what a job asks for is many one-CPU (one-GPU) workers, not one big node
        request_resources(bundles=[{k: 1} for k, v in need.items() for _ in range(math.ceil(v))])
        deadline = time.monotonic() + wait_s
        while missing and time.monotonic() < deadline:
            time.sleep(min(2.0, wait_s))
            missing = shortfall(need, ray.cluster_resources())
        request_resources(bundles=[])  # the request was only to grow it now; the job's own demand keeps it
        if not missing:
            return
    lacking = ", ".join(f"{v:g} {k} (the cluster has {there:g})" for k, (v, there) in missing.items())
    waited = f" and did not get them within {wait_s:g} s" if wait_s > 0 else ""
    raise ClusterTooSmall(
        f"{what} needs {lacking}{waited}: it would wait forever for them. Ask for less, or give the cluster more "
        f"(a local one: --num-cpus; `ray start --num-cpus/--num-gpus`; an autoscaling cluster: set {WAIT_ENV} "
        f"to the seconds to wait for it to grow)")
