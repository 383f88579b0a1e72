"""Connecting to Ray: the one place that decides between a local cluster and a remote one."""

from __future__ import annotations

import logging
import os


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``), or start a local one.

    ``num_cpus`` only applies to a local cluster: a running cluster's size is its own.
    A local cluster is always a new one (``address="local"``): without it Ray would
    join whatever cluster ``ray start`` left running on the machine.
    """
    import ray

    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)
    else:
        ray.init(address="local", num_cpus=num_cpus, **quiet)
