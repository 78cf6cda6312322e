"""What the worker container was given: its environment, and TLS on stdin.

Parsing needs neither wool nor grpc, so bad configuration is reported before
either is imported. Every problem is a `ConfigError` naming its variable; the
variables are listed in the package's docstring.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any
from typing import Final

from wool_docker import _handoff
from wool_docker import _native

# One logger for the whole entry point: its name is in every line the worker logs.
logger = logging.getLogger("wool_docker.entrypoint")

DEFAULT_PORT: Final[int] = _native.DEFAULT_PORT
"""Port bound when ``WOOL_PORT`` is unset; gRPC's customary port."""

DEFAULT_BIND_HOST: Final[str] = _native.DEFAULT_BIND_HOST
"""Host bound when ``WOOL_BIND_HOST`` is unset; every interface, so the
container's published port reaches the server."""

DEFAULT_SHUTDOWN_GRACE: Final[float] = _native.DEFAULT_SHUTDOWN_GRACE
"""Seconds the gRPC server gives open calls after the service has stopped,
when ``WOOL_SHUTDOWN_GRACE`` is unset; wool's own default."""

DEFAULT_DEREGISTER_DELAY: Final[float] = _native.DEFAULT_DEREGISTER_DELAY
"""Seconds between SIGTERM and the drain when ``WOOL_DEREGISTER_DELAY`` is
unset: ample for discovery to drop the worker (milliseconds) and for calls
already routed to it to arrive."""

EXIT_OK: Final[int] = 0
"""Exit code after a clean stop, or of a passing health check."""

EXIT_FAILURE: Final[int] = 1
"""Exit code when the server crashed, or of a failing health check."""

EXIT_CONFIG: Final[int] = 2
"""Exit code for bad configuration (never used by ``--health``: Docker
reserves 2 there)."""

_CONTAINER_ID_MOUNT: Final[re.Pattern[str]] = re.compile(
    r"containers/([0-9a-f]{64})/(?:userdata/)?(?:hostname|hosts|resolv\.conf)\s"
)
"""A per-container file the engine bind-mounts, as a mountinfo root path.

Docker keeps them in ``<data-root>/containers/<id>/``, Podman in
``.../overlay-containers/<id>/userdata/``. Works under cgroup v2, where
``/proc/self/cgroup`` no longer names the container."""

_CONTAINER_ID_CGROUP: Final[re.Pattern[str]] = re.compile(
    r"/docker[/-]([0-9a-f]{64})(?:\.scope)?$", re.MULTILINE
)
"""A cgroup v1 path (``/docker/<id>``) or systemd scope (``docker-<id>.scope``)."""


class ConfigError(Exception):
    """Raised for a bad environment variable; reported in one line, exit 2.

    :param variable:
        The offending variable's name.
    :param problem:
        What is wrong with it.
    """

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Config:
    """The worker's configuration, parsed from the environment.

    Holds plain values only, so parsing needs neither wool nor grpc. A
    ``uid`` of ``None`` is derived from the container id once the rest of the
    configuration has been accepted.
    """

    host: str
    port: int
    uid: uuid.UUID | None
    tags: frozenset[str]
    extra: dict[str, str]
    options: dict[str, Any]
    identity: str | None
    tls: tuple[str, str, str] | None
    tls_mutual: bool
    shutdown_grace: float
    stdin_control: bool
    deregister_delay: float = DEFAULT_DEREGISTER_DELAY
    server_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    proxy_pool_ttl: float | None = None
    backpressure: bytes | None = None


def load_config(environ: Mapping[str, str]) -> Config:
    """Parse and validate every variable the worker reads.

    The rules are the native core's (``serving::ServerConfig``), the same
    types the owner checks its keywords with.

    :param environ:
        The environment.
    :returns:
        The parsed configuration.
    :raises ConfigError:
        For the first variable found to be bad.
    """
    try:
        read = _native.read_server_env(dict(environ))
    except ValueError as e:
        raise _config_error(e) from None
    uid = read["uid"]
    tls = read["tls"]
    return Config(
        host=read["host"],
        port=read["port"],
        uid=None if uid is None else uuid.UUID(uid),
        tags=frozenset(read["tags"]),
        extra=read["extra"],
        options=read["options"],
        identity=read["identity"],
        tls=None if tls is None else (tls[0], tls[1], tls[2]),
        tls_mutual=read["tls_mutual"],
        shutdown_grace=read["shutdown_grace"],
        stdin_control=read["stdin_control"],
        deregister_delay=read["deregister_delay"],
        server_options=read["server_options"],
        proxy_pool_ttl=read["proxy_pool_ttl"],
        backpressure=read["backpressure"],
    )


def _config_error(error: ValueError) -> ConfigError:
    """The native reader's ``"VARIABLE: problem"`` as a `ConfigError`."""
    variable, _, problem = str(error).partition(": ")
    return ConfigError(variable, problem)


def refuse_root(environ: Mapping[str, str]) -> None:
    """Refuse to serve routines (untrusted code) as root, unless allowed.

    :param environ:
        The environment.
    :raises ConfigError:
        If this process runs as uid 0 and ``WOOL_ALLOW_ROOT`` is not true.
    """
    if os.geteuid() == 0 and not read_boolean(environ, "WOOL_ALLOW_ROOT", default=False):
        raise ConfigError(
            "WOOL_ALLOW_ROOT",
            "the worker would serve routines as root; run it as an unprivileged "
            "user (the worker image's USER, DockerWorker's user=, docker run "
            "--user) or set WOOL_ALLOW_ROOT=1",
        )


def receive_tls(environ: Mapping[str, str]) -> None:
    """Write the TLS material handed over on stdin, if the owner sends it there.

    Runs before anything else reads stdin: the material is its first line.

    :param environ:
        The environment.
    :raises ConfigError:
        If ``WOOL_DOCKER_TLS_STDIN`` is not a boolean, or the handoff fails.
    """
    if read_boolean(environ, "WOOL_DOCKER_TLS_STDIN", default=False):
        try:
            _handoff.receive_tls(sys.stdin.fileno() if sys.stdin else 0, environ)
        except _handoff.HandoffError as e:
            raise ConfigError("WOOL_DOCKER_TLS_STDIN", str(e)) from None


def read_port(environ: Mapping[str, str]) -> int:
    """Read the port: the owner's document's, else ``WOOL_PORT``'s.

    :param environ:
        The environment.
    :returns:
        The port.
    :raises ConfigError:
        If it is not an integer in 1-65535.
    """
    try:
        return _native.read_port(dict(environ))
    except ValueError as e:
        raise _config_error(e) from None


def read_boolean(environ: Mapping[str, str], variable: str, *, default: bool) -> bool:
    """Read a boolean variable (``1/true/yes/on``, ``0/false/no/off``).

    :param environ:
        The environment.
    :param variable:
        The variable's name.
    :param default:
        The value when the variable is unset or blank.
    :returns:
        The value.
    :raises ConfigError:
        If the value is not a recognised spelling.
    """
    try:
        return _native.env_flag(dict(environ), variable, default)
    except ValueError as e:
        raise _config_error(e) from None


def default_uid() -> uuid.UUID:
    """Derive the worker uid from the container id, else make a random one.

    :returns:
        ``uuid.UUID(hex=container_id[:32])``, or a `uuid.uuid4`.
    """
    texts = []
    for path in ("/proc/self/mountinfo", "/proc/self/cgroup"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            texts.append("")
    container_id = find_container_id(*texts)
    if container_id is None:
        logger.info("No container id found; using a random worker uid")
        return uuid.uuid4()
    return uuid.UUID(hex=container_id[:32])


def find_container_id(mountinfo: str, cgroup: str) -> str | None:
    """Find this container's full id in ``/proc/self`` text.

    :param mountinfo:
        Contents of ``/proc/self/mountinfo``.
    :param cgroup:
        Contents of ``/proc/self/cgroup``.
    :returns:
        The 64-hex container id, or ``None`` if neither text names one.
    """
    for pattern, text in (
        (_CONTAINER_ID_MOUNT, mountinfo),
        (_CONTAINER_ID_CGROUP, cgroup),
    ):
        if match := pattern.search(text):
            return match.group(1)
    return None
