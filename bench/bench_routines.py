"""The routines the benchmark dispatches, shipped to workers by value.

A worker container does not have this directory on its path, so the module
registers itself with cloudpickle for pickling by value.
"""

from __future__ import annotations

import os
import socket
import sys
import time

import cloudpickle
import wool


@wool.routine
async def echo(value: int) -> int:
    """Return ``value``: the cheapest round trip a routine can make."""
    return value


@wool.routine
async def nested_echo(value: int) -> int:
    """Return ``value`` through `echo` dispatched from inside this worker."""
    return await echo(value)


@wool.routine
async def burn(seconds: float) -> str:
    """Keep one CPU busy for ``seconds``; return ``hostname/pid`` of the server."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return f"{socket.gethostname()}/{os.getpid()}"


@wool.routine
async def spin(cpu_seconds: float) -> str:
    """Use ``cpu_seconds`` of this thread's CPU; return ``hostname/pid``.

    Unlike `burn`, which ends at a wall-clock deadline, this takes longer when
    other processes compete for the cores, so it shows what they cost.
    """
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass
    return f"{socket.gethostname()}/{os.getpid()}"


cloudpickle.register_pickle_by_value(sys.modules[__name__])
