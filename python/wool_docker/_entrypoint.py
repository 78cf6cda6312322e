"""Entry point of a wool worker container: ``python3 -m wool_docker._entrypoint``.

Serves wool's own worker (`wool.runtime.worker.process.WorkerProcess`, run in
this process rather than spawned) with configuration taken from the
environment, announces readiness on stdout, and drains in-flight work when
asked to stop.

Environment variables:

- ``WOOL_PORT`` -- TCP port to bind, 1-65535. Default ``50051``.
- ``WOOL_BIND_HOST`` -- host to bind. Default ``0.0.0.0``.
- ``WOOL_UID`` -- the worker's UUID. Default: derived from this container's
  64-hex id as ``uuid.UUID(hex=container_id[:32])``, so the owner can compute
  it from the id alone; a random UUID when the id cannot be found.
- ``WOOL_TAGS`` -- comma-separated capability tags; empty items are ignored.
- ``WOOL_EXTRA`` -- JSON object of string keys to string values, advertised
  as the worker's extra metadata. Default ``{}``.
- ``WOOL_OPTIONS`` -- JSON object of `wool.runtime.worker.base.ChannelOptions`
  fields; ``compression`` may be an int or a `grpc.Compression` member name.
  Default ``{}`` (wool's defaults).
- ``WOOL_SERVER_OPTIONS`` -- JSON object of the server-side fields of
  `wool.runtime.worker.base.WorkerOptions` (every field but ``channel``).
- ``WOOL_PROXY_POOL_TTL`` -- positive float, seconds the worker keeps an idle
  proxy for nested routines. Default: wool's.
- ``WOOL_BACKPRESSURE`` -- base64 of a cloudpickled admission hook (wool's
  ``backpressure``), as `DockerWorker` ships it.
- ``WOOL_IDENTITY`` -- workload identity to advertise; requires TLS.
- ``WOOL_TLS_CA``, ``WOOL_TLS_CERT``, ``WOOL_TLS_KEY`` -- PEM file paths; all
  three or none. With none the worker serves plaintext.
- ``WOOL_TLS_MUTUAL`` -- boolean, require client certificates. Default
  ``true``.
- ``WOOL_SHUTDOWN_GRACE`` -- positive float, seconds the gRPC server gives
  open calls once the worker service has stopped. Default ``60``.
- ``WOOL_DOCKER_STDIN_CONTROL`` -- boolean; when true, stdin carries owner
  commands (see below). Default off: stdin is never read.
- ``WOOL_DEREGISTER_DELAY`` -- non-negative float, seconds a worker keeps
  serving after SIGTERM before it drains. Default ``1``.
- ``WOOL_DOCKER_TLS_STDIN`` -- boolean; when true, the first line on stdin
  carries the TLS material, written to the ``WOOL_TLS_*`` paths (mode 0400)
  before anything else is read (see `wool_docker._handoff`).
- ``WOOL_ALLOW_ROOT`` -- boolean; the worker refuses to serve as root (uid 0)
  unless this is true. Default off.

Booleans accept ``1/0``, ``true/false``, ``yes/no`` and ``on/off``.

Bad configuration prints one line, ``wool-docker: <VARIABLE>: <problem>``, to
stderr and exits 2.

Once the server is bound, exactly one line goes to stdout: `READY_PREFIX`
followed by a compact JSON object, for example::

    wool-docker ready {"uid":"b2d8782d-56bd-47d7-6198-8603338c0081",...}

Its keys are ``uid`` (str), ``address`` (str, ``host:port`` as bound, e.g.
``0.0.0.0:50051``), ``port`` (int), ``pid`` (int), ``version`` (str, wool's
protocol version), ``secure`` (bool), ``identity`` (str or null), ``tags``
(sorted list of str) and ``extra`` (object of str to str).

Stopping: SIGTERM first keeps serving for ``WOOL_DEREGISTER_DELAY`` seconds:
the Engine's ``kill`` event makes every `DockerDiscovery` drop the worker
within milliseconds, and the delay lets calls already routed here land instead
of being refused by a draining server (which wool 0.15's retry can turn into
``NoWorkersAvailable``). Then SIGTERM, and SIGINT at once, drain in-flight
tasks without a time limit,
since ``docker stop``, Compose scale-down and Swarm expect a drain and
Docker's own stop timeout escalates to SIGKILL. Under stdin control the line
``stop <grace>`` stops with that grace (``0`` cancels in-flight tasks now, a
negative value drains indefinitely, a positive value drains at most that many
seconds), and end of file -- the owner is gone -- stops with grace ``0``. The
first stop request wins; later ones are logged and ignored, because wool's
service stop is idempotent. A clean stop exits 0.

``--health`` TCP-connects to the worker port (on ``127.0.0.1`` unless
``WOOL_BIND_HOST`` names a specific address) with a 2 s timeout and exits 0
if it connects, 1 otherwise; it is the image's ``HEALTHCHECK`` and never
imports wool or grpc, so it stays fast.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

from wool_docker import _handoff
from wool_docker import _native

if TYPE_CHECKING:
    from wool.runtime.worker.service import WorkerService

logger = logging.getLogger("wool_docker.entrypoint")

READY_PREFIX: Final[str] = _native.READY_PREFIX
"""Start of the single stdout line announcing that the server is bound.

Followed by a compact JSON object; the owning process matches on it, so it is
part of the image's contract (defined once, in the native core)."""

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

HEALTH_TIMEOUT: Final[float] = 2.0
"""Seconds ``--health`` waits for the TCP connection before reporting
unhealthy."""

EXIT_OK: Final[int] = 0
"""Exit code after a clean stop, or of a passing health check."""

EXIT_FAILURE: Final[int] = 1
"""Exit code when the server crashed, or of a failing health check."""

EXIT_CONFIG: Final[int] = 2
"""Exit code for bad configuration (never used by ``--health``: Docker
reserves 2 there)."""

_HEALTH_FLAG: Final[str] = "--health"
"""Argument selecting health-check mode."""

_WILDCARD_HOSTS: Final[frozenset[str]] = frozenset({"0.0.0.0", "::", "[::]"})
"""Bind hosts meaning every interface, probed on loopback by ``--health``."""

_LOOPBACK: Final[str] = "127.0.0.1"
"""Address ``--health`` probes when the server binds every interface."""

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

_STDIN_CHUNK: Final[int] = 4096
"""Bytes read from stdin at a time by the control thread."""


class _ConfigError(Exception):
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
class _Config:
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


def main(argv: list[str] | None = None) -> int:
    """Run the worker, or with ``--health`` probe a running one.

    :param argv:
        Command-line arguments without the program name; defaults to
        ``sys.argv[1:]``.
    :returns:
        The process exit code.
    """
    args = sys.argv[1:] if argv is None else argv
    if args == [_HEALTH_FLAG]:
        return _health(os.environ)
    if args:
        print(
            f"usage: python3 -m wool_docker._entrypoint [{_HEALTH_FLAG}]",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    # Before wool's WorkerProcess.run, whose own basicConfig then does nothing.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _refuse_root(os.environ)
        if _boolean(os.environ, "WOOL_DOCKER_TLS_STDIN", default=False):
            try:
                _handoff.receive_tls(sys.stdin.fileno() if sys.stdin else 0, os.environ)
            except _handoff.HandoffError as e:
                raise _ConfigError("WOOL_DOCKER_TLS_STDIN", str(e)) from None
        config = _load_config(os.environ)
        return _serve(config)
    except _ConfigError as e:
        print(f"wool-docker: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        # Only reachable before our handlers are installed, i.e. during start-up.
        return 128 + signal.SIGINT


def _refuse_root(environ: Mapping[str, str]) -> None:
    """Refuse to serve routines (untrusted code) as root, unless allowed.

    :param environ:
        The environment.
    :raises _ConfigError:
        If this process runs as uid 0 and ``WOOL_ALLOW_ROOT`` is not true.
    """
    if os.geteuid() == 0 and not _boolean(environ, "WOOL_ALLOW_ROOT", default=False):
        raise _ConfigError(
            "WOOL_ALLOW_ROOT",
            "the worker would serve routines as root; run it as an unprivileged "
            "user (the worker image's USER, DockerWorker's user=, docker run "
            "--user) or set WOOL_ALLOW_ROOT=1",
        )


def _find_container_id(mountinfo: str, cgroup: str) -> str | None:
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


def _parse_control_line(line: str) -> float | None:
    """Parse one owner command from stdin.

    :param line:
        The line, without its newline.
    :returns:
        The grace of a ``stop <grace>`` command, or ``None`` for a blank line.
    :raises ValueError:
        If the line is not a command this program understands.
    """
    words = line.split()
    if not words:
        return None
    if len(words) == 2 and words[0] == "stop":
        try:
            grace = float(words[1])
        except ValueError:
            raise ValueError(f"bad grace in {line!r}") from None
        if math.isnan(grace):
            raise ValueError(f"bad grace in {line!r}")
        return grace
    raise ValueError(f"unknown command {line!r}")


def _health(environ: Mapping[str, str]) -> int:
    """Probe the worker's port with a plain TCP connection.

    :param environ:
        The environment to read ``WOOL_PORT`` and ``WOOL_BIND_HOST`` from.
    :returns:
        `EXIT_OK` if the port accepts a connection, else `EXIT_FAILURE`.
    """
    try:
        port = _port(environ)
    except _ConfigError as e:
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


def _load_config(environ: Mapping[str, str]) -> _Config:
    """Parse and validate every variable the worker reads.

    :param environ:
        The environment.
    :returns:
        The parsed configuration.
    :raises _ConfigError:
        For the first variable found to be bad.
    """
    host = environ.get("WOOL_BIND_HOST", "").strip() or DEFAULT_BIND_HOST

    raw_uid = environ.get("WOOL_UID", "").strip()
    try:
        uid = uuid.UUID(raw_uid) if raw_uid else None
    except ValueError:
        raise _ConfigError("WOOL_UID", f"not a UUID: {raw_uid!r}") from None

    tags = frozenset(
        t for t in (t.strip() for t in environ.get("WOOL_TAGS", "").split(",")) if t
    )

    extra = _json_object(environ, "WOOL_EXTRA")
    for key, value in extra.items():
        if not isinstance(value, str):
            raise _ConfigError(
                "WOOL_EXTRA",
                f"values must be strings; {key!r} is {type(value).__name__}",
            )

    identity = environ.get("WOOL_IDENTITY", "").strip() or None

    paths = {v: environ.get(v, "").strip() for v in _TLS_VARIABLES}
    missing = [v for v in _TLS_VARIABLES if not paths[v]]
    if missing and len(missing) < len(_TLS_VARIABLES):
        raise _ConfigError(
            missing[0],
            f"unset, but TLS needs all of {', '.join(_TLS_VARIABLES)} or none",
        )
    for variable, path in paths.items():
        if path and not os.path.isfile(path):
            raise _ConfigError(variable, f"no such file: {path}")
    tls = (
        None
        if missing
        else (paths["WOOL_TLS_CA"], paths["WOOL_TLS_CERT"], paths["WOOL_TLS_KEY"])
    )
    if identity is not None and tls is None:
        raise _ConfigError(
            "WOOL_IDENTITY",
            "requires TLS (WOOL_TLS_CA, WOOL_TLS_CERT, WOOL_TLS_KEY): an identity "
            "is proven by the worker's certificate",
        )

    raw_grace = environ.get("WOOL_SHUTDOWN_GRACE", "").strip()
    try:
        grace = float(raw_grace) if raw_grace else DEFAULT_SHUTDOWN_GRACE
    except ValueError:
        raise _ConfigError(
            "WOOL_SHUTDOWN_GRACE", f"not a number: {raw_grace!r}"
        ) from None
    if not (math.isfinite(grace) and grace > 0):
        raise _ConfigError(
            "WOOL_SHUTDOWN_GRACE", f"must be a positive number of seconds: {raw_grace}"
        )

    port = _port(environ)
    options = _json_object(environ, "WOOL_OPTIONS")
    tls_mutual = _boolean(environ, "WOOL_TLS_MUTUAL", default=True)
    stdin_control = _boolean(environ, "WOOL_DOCKER_STDIN_CONTROL", default=False)
    raw_delay = environ.get("WOOL_DEREGISTER_DELAY", "").strip()
    try:
        delay = float(raw_delay) if raw_delay else DEFAULT_DEREGISTER_DELAY
    except ValueError:
        raise _ConfigError(
            "WOOL_DEREGISTER_DELAY", f"not a number: {raw_delay!r}"
        ) from None
    if not (math.isfinite(delay) and delay >= 0):
        raise _ConfigError(
            "WOOL_DEREGISTER_DELAY", f"must be a non-negative number: {raw_delay}"
        )
    server_options = _json_object(environ, "WOOL_SERVER_OPTIONS")
    raw_ttl = environ.get("WOOL_PROXY_POOL_TTL", "").strip()
    try:
        ttl = float(raw_ttl) if raw_ttl else None
    except ValueError:
        raise _ConfigError("WOOL_PROXY_POOL_TTL", f"not a number: {raw_ttl!r}") from None
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise _ConfigError(
            "WOOL_PROXY_POOL_TTL", f"must be a positive number of seconds: {raw_ttl}"
        )
    raw_hook = environ.get("WOOL_BACKPRESSURE", "").strip()
    try:
        backpressure = base64.b64decode(raw_hook, validate=True) if raw_hook else None
    except ValueError:
        raise _ConfigError("WOOL_BACKPRESSURE", "not base64 text") from None
    return _Config(
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


def _port(environ: Mapping[str, str]) -> int:
    """Read ``WOOL_PORT``.

    :param environ:
        The environment.
    :returns:
        The port.
    :raises _ConfigError:
        If it is not an integer in 1-65535.
    """
    raw = environ.get("WOOL_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise _ConfigError("WOOL_PORT", f"not an integer: {raw!r}") from None
    if not 1 <= port <= 65535:
        raise _ConfigError("WOOL_PORT", f"must be in 1-65535: {port}")
    return port


def _boolean(environ: Mapping[str, str], variable: str, *, default: bool) -> bool:
    """Read a boolean variable.

    :param environ:
        The environment.
    :param variable:
        The variable's name.
    :param default:
        The value when the variable is unset or blank.
    :returns:
        The value.
    :raises _ConfigError:
        If the value is not a recognised spelling.
    """
    value = environ.get(variable, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _ConfigError(variable, f"not a boolean: {environ[variable]!r}")


def _json_object(environ: Mapping[str, str], variable: str) -> dict[str, Any]:
    """Read a variable holding a JSON object; unset or blank means ``{}``.

    :param environ:
        The environment.
    :param variable:
        The variable's name.
    :returns:
        The decoded object.
    :raises _ConfigError:
        If the value is not JSON or not an object.
    """
    raw = environ.get(variable, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _ConfigError(variable, f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise _ConfigError(
            variable, f"must be a JSON object, not {type(value).__name__}"
        )
    return value


def _default_uid() -> uuid.UUID:
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
    container_id = _find_container_id(*texts)
    if container_id is None:
        logger.info("No container id found; using a random worker uid")
        return uuid.uuid4()
    return uuid.UUID(hex=container_id[:32])


def _serve(config: _Config) -> int:
    """Serve the worker in this process until it is stopped.

    :param config:
        The parsed configuration.
    :returns:
        `EXIT_OK` after a clean stop, `EXIT_FAILURE` if the server crashed.
    :raises _ConfigError:
        If ``WOOL_OPTIONS`` or the TLS files are rejected by wool.
    """
    # WorkerProcess.start sets this for the processes it spawns; we skip start,
    # and gRPC reads it once at import, so it must be in place before wool loads.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

    from wool.runtime.worker import process as wool_process
    from wool.runtime.worker.auth import WorkerCredentials

    options = _worker_options(config.options, config.server_options)
    backpressure = None
    if config.backpressure is not None:
        import cloudpickle

        try:
            backpressure = cloudpickle.loads(config.backpressure)
        except Exception as e:
            raise _ConfigError(
                "WOOL_BACKPRESSURE", f"cannot unpickle the admission hook: {e}"
            ) from None
    credentials = None
    if config.tls is not None:
        ca, cert, key = config.tls
        try:
            credentials = WorkerCredentials.from_files(
                ca_path=ca, key_path=key, cert_path=cert, mutual=config.tls_mutual
            )
        except OSError as e:
            variable = {ca: "WOOL_TLS_CA", cert: "WOOL_TLS_CERT", key: "WOOL_TLS_KEY"}
            raise _ConfigError(
                variable.get(e.filename, "WOOL_TLS_CA"), f"cannot read: {e}"
            ) from None

    # Only now, so nothing is logged for a configuration that is then rejected.
    uid = config.uid if config.uid is not None else _default_uid()
    worker = wool_process.WorkerProcess(
        uid=uid,
        host=config.host,
        port=config.port,
        shutdown_grace_period=config.shutdown_grace,
        credentials=credentials,
        options=options,
        tags=config.tags,
        extra=config.extra,
        identity=config.identity,
        backpressure=backpressure,
        **(
            {}
            if config.proxy_pool_ttl is None
            else {"proxy_pool_ttl": config.proxy_pool_ttl}
        ),
    )
    announcer = threading.Thread(
        target=_announce_ready,
        args=(worker._get_metadata,),
        name="wool-docker-ready",
        daemon=True,
    )
    announcer.start()

    # wool 0.15 offers no hook for its shutdown policy: `_serve` enters the
    # module-level `_signal_handlers(service)` inside its loop, and its SIGTERM
    # handler cancels in-flight work at once. The name is looked up at call
    # time, so swapping it gives us the loop and service to stop with our own
    # policy. Private API, hence the pin to wool<0.16.
    original = wool_process._signal_handlers
    wool_process._signal_handlers = lambda service: _stop_controls(
        service,
        schedule_stop=wool_process._schedule_stop,
        stdin_control=config.stdin_control,
        deregister_delay=config.deregister_delay,
    )
    try:
        worker.run()
    except Exception:
        # WorkerProcess.run has already logged the traceback.
        return EXIT_FAILURE
    finally:
        wool_process._signal_handlers = original
        # Unblocks the announcer if the server died before reporting metadata.
        worker._set_metadata.close()
        announcer.join(timeout=5)
    logger.info("Worker stopped")
    return EXIT_OK


def _worker_options(raw: dict[str, Any], server: dict[str, Any] | None = None) -> Any:
    """Build wool's `WorkerOptions` from ``WOOL_OPTIONS`` and ``WOOL_SERVER_OPTIONS``.

    :param raw:
        The decoded ``WOOL_OPTIONS`` object of `ChannelOptions` fields.
    :param server:
        The decoded ``WOOL_SERVER_OPTIONS`` object of the other `WorkerOptions`
        fields.
    :returns:
        A `wool.runtime.worker.base.WorkerOptions`.
    :raises _ConfigError:
        For an unknown field, a value of the wrong type, or options wool
        rejects.
    """
    # Imports wool and grpc: only once the server is about to be built.
    from wool.runtime.worker.base import WorkerOptions

    from wool_docker._convert import channel_options

    try:
        channel = channel_options(raw, strict=True)
    except ValueError as e:
        raise _ConfigError("WOOL_OPTIONS", str(e)) from None
    server = dict(server or {})
    known = {f.name for f in dataclasses.fields(WorkerOptions)} - {"channel"}
    if unknown := sorted(set(server) - known):
        raise _ConfigError(
            "WOOL_SERVER_OPTIONS",
            f"unknown option {unknown[0]!r}; "
            f"expected some of {', '.join(sorted(known))}",
        )
    for name, value in server.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _ConfigError(
                "WOOL_SERVER_OPTIONS", f"{name} must be an integer or null"
            )
    try:
        return WorkerOptions(channel=channel, **server)
    except ValueError as e:
        raise _ConfigError("WOOL_SERVER_OPTIONS", str(e)) from None


def _announce_ready(connection: Any) -> None:
    """Print the ready line once wool reports the bound server's metadata.

    Runs on a thread: wool sends the metadata over its pipe from inside its
    event loop, right after the server has bound.

    :param connection:
        The read end of the worker's metadata pipe.
    """
    from wool import protocol
    from wool.runtime.worker.metadata import WorkerMetadata

    try:
        payload = connection.recv()
    except (EOFError, OSError):
        return  # The server never came up; its failure is logged elsewhere.
    finally:
        connection.close()
    metadata = WorkerMetadata.from_protobuf(protocol.WorkerMetadata.FromString(payload))
    ready = {
        "uid": str(metadata.uid),
        "address": metadata.address,
        "port": int(metadata.address.rsplit(":", 1)[1]),
        "pid": metadata.pid,
        "version": metadata.version,
        "secure": metadata.secure,
        "identity": metadata.identity,
        "tags": sorted(metadata.tags),
        "extra": dict(metadata.extra),
    }
    line = READY_PREFIX + json.dumps(ready, separators=(",", ":"))
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError):
        logger.warning("Could not write the ready line: stdout is closed")
    logger.info("Worker %s ready on %s", metadata.uid, metadata.address)


class _Stopper:
    """Turns stop requests from signals and stdin into one wool service stop.

    :param loop:
        The worker's running event loop.
    :param service:
        The worker's `WorkerService`.
    :param schedule_stop:
        wool's `_schedule_stop`, safe to call from any thread.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        service: WorkerService,
        schedule_stop: Callable[[asyncio.AbstractEventLoop, WorkerService, float], None],
    ):
        self._loop = loop
        self._service = service
        self._schedule_stop = schedule_stop
        self._lock = threading.Lock()
        self._grace: float | None = None

    def request(self, grace: float, reason: str) -> None:
        """Stop the worker, unless a stop was already requested.

        :param grace:
            ``0`` cancels in-flight tasks now, a negative value drains them
            indefinitely, a positive value drains at most that many seconds.
        :param reason:
            What asked, for the log.
        """
        with self._lock:
            earlier = self._grace
            if earlier is None:
                self._grace = grace
        if earlier is not None:
            # wool's WorkerService.stop ignores every call after the first.
            logger.info(
                "%s: already stopping (%s); ignored", reason, _describe_grace(earlier)
            )
            return
        # Scheduled before it is logged: a routine that blocks stderr (a full
        # pipe, an owner slow to read) must not hold up its worker's stop.
        self._schedule_stop(self._loop, self._service, grace)
        logger.info("%s: stopping (%s)", reason, _describe_grace(grace))


@contextlib.contextmanager
def _stop_controls(
    service: WorkerService,
    *,
    schedule_stop: Callable[[asyncio.AbstractEventLoop, WorkerService, float], None],
    stdin_control: bool,
    deregister_delay: float = 0.0,
) -> Iterator[None]:
    """Stand-in for wool's ``_signal_handlers``: our stop policy for the server.

    Entered by wool inside the worker's running loop, before the server starts.

    :param service:
        The worker's `WorkerService`.
    :param schedule_stop:
        wool's `_schedule_stop`.
    :param stdin_control:
        Whether to start the stdin control thread.
    :param deregister_delay:
        Seconds to keep serving after SIGTERM before the drain.
    :yields:
        Control while the server runs.
    """
    loop = asyncio.get_running_loop()
    stopper = _Stopper(loop, service, schedule_stop)

    # On the loop rather than signal.signal: the handler then never re-enters
    # itself mid-request when a second signal lands.
    def on_sigterm() -> None:
        if deregister_delay > 0:
            logger.info(
                "SIGTERM: serving %gs more while discovery drops this worker",
                deregister_delay,
            )
        # A stop requested meanwhile (SIGINT, stdin) wins; this one is then ignored.
        loop.call_later(deregister_delay, stopper.request, -1.0, "SIGTERM")

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, stopper.request, -1.0, "SIGINT")
    if stdin_control:
        threading.Thread(
            target=_read_stdin_control,
            args=(sys.stdin.fileno() if sys.stdin else 0, stopper),
            name="wool-docker-stdin",
            daemon=True,
        ).start()
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _read_stdin_control(fd: int, stopper: _Stopper) -> None:
    """Read owner commands from stdin until end of file.

    Reads the raw descriptor: a daemon thread blocked inside ``sys.stdin``'s
    buffer would hold its lock and can abort interpreter shutdown.

    :param fd:
        The stdin file descriptor.
    :param stopper:
        Where stop requests go.
    """
    pending = b""
    while True:
        try:
            chunk = os.read(fd, _STDIN_CHUNK)
        except OSError as e:
            logger.warning("Cannot read stdin (%s); treating it as closed", e)
            chunk = b""
        if not chunk:
            if pending.strip():
                _handle_control_line(pending, stopper)
            stopper.request(0.0, "stdin closed (owner gone)")
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            _handle_control_line(raw, stopper)


def _handle_control_line(raw: bytes, stopper: _Stopper) -> None:
    """Act on one stdin line, warning about ones not understood.

    :param raw:
        The line's bytes, without the newline.
    :param stopper:
        Where stop requests go.
    """
    line = raw.decode("utf-8", errors="replace").strip()
    try:
        grace = _parse_control_line(line)
    except ValueError as e:
        logger.warning("Ignoring stdin line: %s", e)
        return
    if grace is not None:
        stopper.request(grace, f"stdin {line!r}")


def _describe_grace(grace: float) -> str:
    """Say in words what a stop grace does, for the log.

    :param grace:
        The grace.
    :returns:
        A short phrase.
    """
    if grace == 0:
        return "cancelling in-flight tasks"
    if grace < 0:
        return "draining in-flight tasks"
    return f"draining in-flight tasks for up to {grace:g}s"


if __name__ == "__main__":
    sys.exit(main())
