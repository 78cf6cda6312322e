"""Routines the integration tests dispatch to worker containers.

A worker container does not have this test tree on its path, and cloudpickle
pickles a module-level function by reference (module and name) unless its
module is registered for pickling by value. This module registers itself, so
every routine here travels to the container as code.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import cloudpickle
import wool


@wool.routine
async def hostname() -> str:
    """Return the hostname of the process serving this call.

    In a container that is the first 12 hex digits of the container's id.
    """
    return socket.gethostname()


@wool.routine
async def burn(seconds: float) -> str:
    """Keep one CPU busy for ``seconds``; return ``hostname/pid`` of the server.

    The pid tells `LocalWorker`s apart, which share the host's name.
    """
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return f"{socket.gethostname()}/{os.getpid()}"


@wool.routine
async def nap(token: str, seconds: float) -> str:
    """Announce ``napping <token>`` on stdout, sleep, and return ``token``.

    The announcement reaches the owner through the container's output, so a
    test can wait for the routine to be running instead of guessing.
    """
    print(f"napping {token}", flush=True)
    await asyncio.sleep(seconds)
    return token


def reject_all(context: object) -> bool:
    """A backpressure hook that rejects every task (``True`` rejects)."""
    return True


def accept_all(context: object) -> bool:
    """A backpressure hook that accepts every task."""
    return False


cloudpickle.register_pickle_by_value(sys.modules[__name__])
