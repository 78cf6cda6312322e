"""Routines that attack what a worker container can reach, from inside it.

They run as any submitted routine would: in a `DockerWorker` container, as the
container's user, in its cgroup. Registered for pickling by value: the
containers do not have this test tree.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import cloudpickle
import wool

FEED: str = "/run/wool-docker/feed.sock"
"""Where the owner's feed is bind-mounted."""


def _feed() -> str:
    """The feed's path in this container: bind-mounted, or its relay's."""
    return os.environ.get("WOOL_DOCKER_FEED", FEED)


"""Where `DockerWorker` mounts its owner's worker feed."""


def _exchange(payload: bytes, *, pace: float = 0.0, wait: float = 15.0) -> bytes:
    """Send ``payload`` to the feed (byte by byte every ``pace`` s if given) and
    return everything it answers until it hangs up or ``wait`` s pass."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(wait)
        s.connect(_feed())
        try:
            if pace:
                for byte in payload:
                    s.sendall(bytes([byte]))
                    time.sleep(pace)
            else:
                s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _until_hang_up(s)


def _until_hang_up(s: socket.socket) -> bytes:
    """Everything the feed sends on ``s`` until it hangs up, or ``<no hang-up>``
    appended if the socket's timeout passes first."""
    reply = b""
    try:
        while chunk := s.recv(65536):
            reply += chunk
    except ConnectionResetError:
        # The owner hung up with our bytes unread: a hang-up too.
        pass
    except TimeoutError:
        reply += b"<no hang-up>"
    return reply


@wool.routine
async def send(payload: bytes, pace: float = 0.0) -> bytes:
    """What the feed answers to one raw write of ``payload``."""
    return await asyncio.to_thread(_exchange, payload, pace=pace)


@wool.routine
async def lines(request: bytes, n: int) -> list[bytes]:
    """The feed's first ``n`` lines in answer to ``request`` (a valid one
    streams on), fewer if it hangs up first."""

    def read() -> list[bytes]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(15)
            s.connect(_feed())
            s.sendall(request)
            buffer = b""
            while buffer.count(b"\n") < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            return buffer.splitlines(keepends=True)[:n]

    return await asyncio.to_thread(read)


@wool.routine
async def subscribe_elsewhere(labels: dict[str, str]) -> str:
    """Iterate a `DockerDiscovery` of another scope than the pool's."""
    from wool_docker import DockerDiscovery

    try:
        async with asyncio.timeout(15):
            async for _ in DockerDiscovery(labels=labels).subscriber:
                return "an event"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "the iteration ended"


@wool.routine
async def first_worker_here(network: str) -> str:
    """The uid of the first worker a `DockerDiscovery` built in this routine,
    with the default labels and owner filter, announces."""
    return await _first_worker(network)


async def _first_worker(network: str) -> str:
    from wool_docker import DockerDiscovery

    try:
        async with asyncio.timeout(15):
            async for event in DockerDiscovery(network=network).subscriber:
                return str(event.metadata.uid)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "the iteration ended"


@wool.routine
async def first_worker_again_and_again(network: str, times: int) -> list[str]:
    """`first_worker_here`, ``times`` over, one subscription after another
    (each closed before the next opens)."""
    return [await _first_worker(network) for _ in range(times)]


@wool.routine
async def flood(n: int) -> list[bytes]:
    """Hold ``n`` connections open at once, sending nothing, and return what
    each got before the owner hung up (or ``<no hang-up>``)."""

    def run() -> list[bytes]:
        sockets = []
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX)
                sockets.append(s)
                s.connect(_feed())
            replies = []
            deadline = time.monotonic() + 30
            for s in sockets:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                replies.append(_until_hang_up(s))
            return replies
        finally:
            for s in sockets:
                s.close()

    return await asyncio.to_thread(run)


_HELD = "_wdt_held_feed"
"""Where `hold` keeps its connection between routines: an attribute of `sys`,
shared by every routine of the worker process (this module travels by value)."""


@wool.routine
async def hold(request: bytes) -> bytes:
    """Send ``request``, return the feed's first line and keep the connection
    open, unread, for `held_reply`."""

    def run() -> bytes:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(15)
        s.connect(_feed())
        s.sendall(request)
        first = b""
        while not first.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            first += chunk
        setattr(sys, _HELD, s)
        return first

    return await asyncio.to_thread(run)


@wool.routine
async def held_reply(chunk: int = 65536, pace: float = 0.0, wait: float = 15.0) -> bytes:
    """Everything the connection `hold` kept gets until the owner hangs up (or
    ``<no hang-up>`` after ``wait`` s), read ``chunk`` bytes every ``pace`` s."""

    def run() -> bytes:
        s: socket.socket = getattr(sys, _HELD)
        delattr(sys, _HELD)
        deadline = time.monotonic() + wait
        reply = b""
        with s:
            try:
                while (left := deadline - time.monotonic()) > 0:
                    s.settimeout(left)
                    data = s.recv(chunk)
                    if not data:
                        return reply
                    reply += data
                    time.sleep(pace)
            except ConnectionResetError:
                return reply
            except TimeoutError:
                pass
        return reply + b"<no hang-up>"

    return await asyncio.to_thread(run)


@wool.routine
async def surroundings() -> dict[str, object]:
    """What a routine can see of the Engine from its container."""
    return {
        "env": dict(os.environ),
        "docker_sock": os.path.exists("/var/run/docker.sock"),
        "mounts": open("/proc/self/mountinfo").read(),
    }


cloudpickle.register_pickle_by_value(sys.modules[__name__])
