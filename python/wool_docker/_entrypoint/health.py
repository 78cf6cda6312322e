"""``--health``: the image's ``HEALTHCHECK``, a plain TCP connect to the worker port.

Imports neither wool nor grpc, so it stays fast.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from typing import Final

from wool_docker._entrypoint.config import DEFAULT_BIND_HOST
from wool_docker._entrypoint.config import EXIT_FAILURE
from wool_docker._entrypoint.config import EXIT_OK
from wool_docker._entrypoint.config import ConfigError
from wool_docker._entrypoint.config import read_port

HEALTH_TIMEOUT: Final[float] = 2.0
"""Seconds ``--health`` waits for the TCP connection before reporting
unhealthy."""

_WILDCARD_HOSTS: Final[frozenset[str]] = frozenset({"0.0.0.0", "::", "[::]"})
"""Bind hosts meaning every interface, probed on loopback by ``--health``."""

_LOOPBACK: Final[str] = "127.0.0.1"
"""Address ``--health`` probes when the server binds every interface."""


def check(environ: Mapping[str, str]) -> int:
    """Probe the worker's port with a plain TCP connection.

    :param environ:
        The environment to read ``WOOL_PORT`` and ``WOOL_BIND_HOST`` from.
    :returns:
        `EXIT_OK` if the port accepts a connection, else `EXIT_FAILURE`.
    """
    try:
        port = read_port(environ)
    except ConfigError as e:
        print(f"wool-docker: {e}", file=sys.stderr)
        return EXIT_FAILURE
    host = environ.get("WOOL_BIND_HOST", "").strip() or DEFAULT_BIND_HOST
    target = _LOOPBACK if host in _WILDCARD_HOSTS else host.strip("[]")
    try:
        with socket.create_connection((target, port), timeout=HEALTH_TIMEOUT):
            return EXIT_OK
    except OSError as e:
        print(f"wool-docker: {target}:{port} unreachable: {e}", file=sys.stderr)
        return EXIT_FAILURE
