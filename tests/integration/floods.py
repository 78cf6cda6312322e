"""Routines that print what an untrusted routine may print, for the output tests.

Registered for pickling by value, like `routines`, so they travel to the
container as code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import cloudpickle
import wool

_BLOCK = 1 << 20
"""Bytes written per system call by `flood`."""


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many calls that takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@wool.routine
async def flood(total: int, line: int) -> float:
    """Write ``total`` bytes to stderr and return the seconds that took.

    :param total:
        Bytes to write, then one newline.
    :param line:
        Length of each line including its newline; ``0`` writes no newline
        until the end.
    """
    start = time.perf_counter()
    if line:
        block = (b"x" * (line - 1) + b"\n") * max(1, _BLOCK // line)
    else:
        block = b"x" * _BLOCK
    sent = 0
    while sent < total:
        part = block[: total - sent]
        _write_all(2, part)
        sent += len(part)
    _write_all(2, b"\n")
    return time.perf_counter() - start


@wool.routine
async def progress(token: str, updates: int) -> float:
    """Draw a tqdm-style progress bar on stderr, flushed at every update.

    Every update starts with ``\\r`` and redraws the line; one newline ends
    the bar. Returns the seconds it took.
    """
    start = time.perf_counter()
    for i in range(1, updates + 1):
        percent = 100 * i // updates
        bar = "\u2588" * (percent // 4)
        rate = "[00:01<00:00, 9999.99it/s]"
        sys.stderr.write(f"\r{token} {percent:3d}%|{bar:<25}| {i}/{updates} {rate}")
        sys.stderr.flush()
    sys.stderr.write("\n")
    sys.stderr.flush()
    return time.perf_counter() - start


@wool.routine
async def escapes(token: str) -> None:
    """Print a line full of terminal escape sequences and control characters."""
    print(
        f"\x1b[1;31mred\x1b[0m \x1b]0;a window title\x07{token}"
        f" \x1b]8;;http://example.com\x1b\\link\x1b]8;;\x1b\\ \x07bell\x1b[2K",
        flush=True,
    )


_wedge: list[int] = []
"""The pipe `wedge` leaves stderr blocked on, kept open for good."""


@wool.routine
async def wedge(token: str) -> None:
    """Leave the server unable to write to stderr, then say ``wedged <token>``.

    stderr becomes a full pipe nobody reads, as if the owner had stopped
    reading: the next log line of the server (its stop command's "stopping"
    line first) blocks for good, so the server no longer acts on its control
    channel.
    """
    r, w = os.pipe()
    _wedge.extend((r, w))
    os.set_blocking(w, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x" * 65536)
    os.set_blocking(w, True)
    os.dup2(w, 2)
    print(f"wedged {token}", flush=True)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
