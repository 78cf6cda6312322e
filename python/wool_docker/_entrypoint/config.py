"""What the worker container was given: its environment, and TLS on stdin.

Parsing needs neither wool nor grpc, so bad configuration is reported before
either is imported. Every problem is a `ConfigError` naming its variable; the
variables are listed in the package's docstring.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
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

DEFAULT_BIND_HOST: Final[str] = "0.0.0.0"
"""Host bound when ``WOOL_BIND_HOST`` is unset; every interface, so the
container's published port reaches the server."""

DEFAULT_SHUTDOWN_GRACE: Final[float] = 60.0
"""Seconds the gRPC server gives open calls after the service has stopped,
when ``WOOL_SHUTDOWN_GRACE`` is unset; wool's own default."""

DEFAULT_DEREGISTER_DELAY: Final[float] = 1.0
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

_TRUE: Final[frozenset[str]] = frozenset({"1", "true", "yes", "on"})
"""Spellings of a true boolean variable, compared lower-cased."""

_FALSE: Final[frozenset[str]] = frozenset({"0", "false", "no", "off"})
"""Spellings of a false boolean variable, compared lower-cased."""

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

_TLS_VARIABLES: Final[tuple[str, ...]] = ("WOOL_TLS_CA", "WOOL_TLS_CERT", "WOOL_TLS_KEY")
"""The TLS file variables, all set or none."""


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

    :param environ:
        The environment.
    :returns:
        The parsed configuration.
    :raises ConfigError:
        For the first variable found to be bad.
    """
    host = environ.get("WOOL_BIND_HOST", "").strip() or DEFAULT_BIND_HOST

    raw_uid = environ.get("WOOL_UID", "").strip()
    try:
        uid = uuid.UUID(raw_uid) if raw_uid else None
    except ValueError:
        raise ConfigError("WOOL_UID", f"not a UUID: {raw_uid!r}") from None

    tags = frozenset(
        t for t in (t.strip() for t in environ.get("WOOL_TAGS", "").split(",")) if t
    )

    raw_extra = environ.get("WOOL_EXTRA", "").strip()
    try:
        extra = _native.check_extra(raw_extra) if raw_extra else {}
    except ValueError as e:
        raise ConfigError("WOOL_EXTRA", str(e)) from None

    identity = environ.get("WOOL_IDENTITY", "").strip() or None

    paths = {v: environ.get(v, "").strip() for v in _TLS_VARIABLES}
    missing = [v for v in _TLS_VARIABLES if not paths[v]]
    if missing and len(missing) < len(_TLS_VARIABLES):
        raise ConfigError(
            missing[0],
            f"unset, but TLS needs all of {', '.join(_TLS_VARIABLES)} or none",
        )
    for variable, path in paths.items():
        if path and not os.path.isfile(path):
            raise ConfigError(variable, f"no such file: {path}")
    tls = (
        None
        if missing
        else (paths["WOOL_TLS_CA"], paths["WOOL_TLS_CERT"], paths["WOOL_TLS_KEY"])
    )
    if identity is not None and tls is None:
        raise ConfigError(
            "WOOL_IDENTITY",
            "requires TLS (WOOL_TLS_CA, WOOL_TLS_CERT, WOOL_TLS_KEY): an identity "
            "is proven by the worker's certificate",
        )

    raw_grace = environ.get("WOOL_SHUTDOWN_GRACE", "").strip()
    try:
        grace = float(raw_grace) if raw_grace else DEFAULT_SHUTDOWN_GRACE
    except ValueError:
        raise ConfigError(
            "WOOL_SHUTDOWN_GRACE", f"not a number: {raw_grace!r}"
        ) from None
    if not (math.isfinite(grace) and grace > 0):
        raise ConfigError(
            "WOOL_SHUTDOWN_GRACE", f"must be a positive number of seconds: {raw_grace}"
        )

    port = read_port(environ)
    options = _json_object(environ, "WOOL_OPTIONS")
    tls_mutual = read_boolean(environ, "WOOL_TLS_MUTUAL", default=True)
    stdin_control = read_boolean(environ, "WOOL_DOCKER_STDIN_CONTROL", default=False)
    raw_delay = environ.get("WOOL_DEREGISTER_DELAY", "").strip()
    try:
        delay = float(raw_delay) if raw_delay else DEFAULT_DEREGISTER_DELAY
    except ValueError:
        raise ConfigError(
            "WOOL_DEREGISTER_DELAY", f"not a number: {raw_delay!r}"
        ) from None
    if not (math.isfinite(delay) and delay >= 0):
        raise ConfigError(
            "WOOL_DEREGISTER_DELAY", f"must be a non-negative number: {raw_delay}"
        )
    server_options = _json_object(environ, "WOOL_SERVER_OPTIONS")
    raw_ttl = environ.get("WOOL_PROXY_POOL_TTL", "").strip()
    try:
        ttl = float(raw_ttl) if raw_ttl else None
    except ValueError:
        raise ConfigError("WOOL_PROXY_POOL_TTL", f"not a number: {raw_ttl!r}") from None
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise ConfigError(
            "WOOL_PROXY_POOL_TTL", f"must be a positive number of seconds: {raw_ttl}"
        )
    raw_hook = environ.get("WOOL_BACKPRESSURE", "").strip()
    try:
        backpressure = base64.b64decode(raw_hook, validate=True) if raw_hook else None
    except ValueError:
        raise ConfigError("WOOL_BACKPRESSURE", "not base64 text") from None
    return Config(
        host=host,
        port=port,
        uid=uid,
        tags=tags,
        extra=extra,
        options=options,
        identity=identity,
        tls=tls,
        tls_mutual=tls_mutual,
        shutdown_grace=grace,
        stdin_control=stdin_control,
        deregister_delay=delay,
        server_options=server_options,
        proxy_pool_ttl=ttl,
        backpressure=backpressure,
    )


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
    """Read ``WOOL_PORT``.

    :param environ:
        The environment.
    :returns:
        The port.
    :raises ConfigError:
        If it is not an integer in 1-65535.
    """
    raw = environ.get("WOOL_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        return _native.check_port(raw)
    except ValueError as e:
        raise ConfigError("WOOL_PORT", str(e)) from None


def read_boolean(environ: Mapping[str, str], variable: str, *, default: bool) -> bool:
    """Read a boolean variable.

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
    value = environ.get(variable, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(variable, f"not a boolean: {environ[variable]!r}")


def _json_object(environ: Mapping[str, str], variable: str) -> dict[str, Any]:
    """Read a variable holding a JSON object; unset or blank means ``{}``.

    :param environ:
        The environment.
    :param variable:
        The variable's name.
    :returns:
        The decoded object.
    :raises ConfigError:
        If the value is not JSON or not an object.
    """
    raw = environ.get(variable, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(variable, f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(variable, f"must be a JSON object, not {type(value).__name__}")
    return value


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
