"""Routines that await other routines, dispatched from inside worker containers.

Registered for pickling by value: the containers do not have this test tree.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import cloudpickle
import wool


@wool.routine
async def fib(n: int) -> int:
    """Fibonacci by nested dispatch: each level runs on some worker of the pool."""
    if n < 2:
        return n
    a, b = await asyncio.gather(fib(n - 1), fib(n - 2))
    return a + b


@wool.routine
async def hostname() -> str:
    """The hostname of the container serving this call."""
    return socket.gethostname()


@wool.routine
async def spread(calls: int) -> tuple[str, list[str]]:
    """Where this call ran, and where the ``calls`` it dispatched from there ran."""
    reached = await asyncio.gather(*(hostname() for _ in range(calls)))
    return socket.gethostname(), sorted(set(reached))


cloudpickle.register_pickle_by_value(sys.modules[__name__])
