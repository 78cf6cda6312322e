"""Routines that await other routines, dispatched from inside worker containers.

Registered for pickling by value: the containers do not have this test tree.
"""

from __future__ import annotations

import asyncio
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


cloudpickle.register_pickle_by_value(sys.modules[__name__])
