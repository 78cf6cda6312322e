"""The lifeline: a Swarm worker's stdin, over TCP from its owner.

A Swarm service's task has no stdin its owner could hold open, and may run on
another node. So when ``WOOL_DOCKER_LIFELINE`` (``host:port``) is set, the
entry point connects there, presents ``WOOL_DOCKER_LIFELINE_TOKEN`` as its
first line, and makes the connection its standard input: the TLS line, the
stop commands and end of file (the owner is gone) then arrive exactly as on a
container's stdin. The ready line is written to it too (`announce`), which
is how the owner learns that the task serves.

With the worker feed (``WOOL_DOCKER_FEED``), the entry point makes a second
connection, presenting ``WOOL_DOCKER_FEED_TOKEN``, and runs the feed's relay
(`wool_docker._relay`) on it: the relay listens on the feed's path in the
container and carries its connections to the owner, as the owner's own exec
of it does in a container it started (`attach_feed`).

TCP keepalive bounds how long a task keeps serving an owner whose machine
vanished without closing the connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Final

from wool_docker._entrypoint.config import ConfigError

ADDRESS_VARIABLE: Final[str] = "WOOL_DOCKER_LIFELINE"
"""The owner's ``host:port``."""

TOKEN_VARIABLE: Final[str] = "WOOL_DOCKER_LIFELINE_TOKEN"
"""The one-time token that pairs this task with its owner's start."""

FEED_TOKEN_VARIABLE: Final[str] = "WOOL_DOCKER_FEED_TOKEN"
"""The one-time token that pairs the feed's relay with its owner's start."""

FEED_VARIABLE: Final[str] = "WOOL_DOCKER_FEED"
"""Where routines find the feed, and so where the relay listens."""

CONNECT_FOR: Final[float] = 30.0
"""Seconds to keep trying to connect: an overlay route can take a moment."""

_RETRY: Final[float] = 0.2
"""Seconds between connection attempts."""

_KEEPALIVE: Final[tuple[int, int, int]] = (10, 5, 3)
"""Idle seconds, probe interval and probes before a silent owner counts as gone."""


def attach(environ: MutableMapping[str, str], stdin: int = 0) -> bool:
    """Connect to the owner's lifeline, if one is named, and make it ``stdin``.

    The token is removed from ``environ``: routines have no use for it.

    :param environ:
        The environment.
    :param stdin:
        The descriptor the connection replaces.
    :returns:
        Whether a lifeline was attached.
    :raises ConfigError:
        If the address is malformed or the owner cannot be reached in time.
    """
    address = environ.get(ADDRESS_VARIABLE)
    if not address:
        return False
    token = environ.pop(TOKEN_VARIABLE, "")
    connection = _connect(address, token)
    fd = connection.detach()
    os.dup2(fd, stdin)
    os.close(fd)
    return True


def attach_feed(environ: MutableMapping[str, str]) -> subprocess.Popen[bytes] | None:
    """Run the feed's relay on a connection of its own to the owner's lifeline,
    if the owner named one.

    The token is removed from ``environ``: routines have no use for it.

    :param environ:
        The environment.
    :returns:
        The relay's process, or ``None`` without a feed token.
    :raises ConfigError:
        If the owner cannot be reached in time.
    """
    token = environ.pop(FEED_TOKEN_VARIABLE, "")
    address = environ.get(ADDRESS_VARIABLE)
    path = environ.get(FEED_VARIABLE)
    if not token or not address or not path:
        return None
    connection = _connect(address, token)
    relay = Path(__file__).resolve().parent.parent / "_relay.py"
    with connection:
        # Standard library only, isolated from the environment: as the owner
        # runs it in the containers it starts.
        return subprocess.Popen(
            [sys.executable, "-I", "-S", str(relay), path],
            stdin=connection.fileno(),
            stdout=connection.fileno(),
        )


def _connect(address: str, token: str) -> socket.socket:
    """A connection to the owner's lifeline at ``address`` that presented
    ``token``, with keepalive."""
    host, sep, port_text = address.rpartition(":")
    # `[fd00::1]:port`: an IPv6 address in brackets.
    host = host.removeprefix("[").removesuffix("]")
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    if not sep or not host or not 0 < port < 65536 or not token:
        raise ConfigError(
            ADDRESS_VARIABLE, f"expected host:port and a token, got {address!r}"
        )
    deadline = time.monotonic() + CONNECT_FOR
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=5)
            break
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    ADDRESS_VARIABLE, f"cannot reach the owner at {address}: {e}"
                ) from None
            time.sleep(_RETRY)
    connection.settimeout(None)
    _keepalive(connection)
    connection.sendall(token.encode() + b"\n")
    return connection


def announce(line: str, stdin: int = 0) -> None:
    """Write ``line`` to the owner over the lifeline (our stdin).

    :param line:
        The line, without its newline.
    :param stdin:
        The lifeline's descriptor.
    """
    data = (line + "\n").encode()
    while data:
        written = os.write(stdin, data)
        data = data[written:]


def _keepalive(connection: socket.socket) -> None:
    """Probe an idle connection, so a vanished owner ends it."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval, count = _KEEPALIVE
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", count),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            connection.setsockopt(socket.IPPROTO_TCP, option, value)
