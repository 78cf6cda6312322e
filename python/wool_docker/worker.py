"""`DockerWorker`: a wool worker that runs in a Docker container.

The container lifecycle (create, attach, start, readiness, drain, removal) lives in
the native core; this module converts wool's arguments and results.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import warnings
from collections.abc import Mapping
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING
from typing import Any
from typing import Final
from typing import Literal

import cloudpickle
from wool import protocol
from wool.runtime.worker.auth import WorkerCredentials
from wool.runtime.worker.auth import WorkerCredentialsProvider
from wool.runtime.worker.auth import normalize_peer
from wool.runtime.worker.base import ChannelOptions
from wool.runtime.worker.base import Worker
from wool.runtime.worker.base import WorkerOptions
from wool.runtime.worker.metadata import WorkerMetadata

from wool_docker import _native
from wool_docker._convert import options_fields

if TYPE_CHECKING:
    from wool.runtime.worker.service import BackpressureLike

DEFAULT_PORT: Final[int] = _native.DEFAULT_PORT
"""Port the worker image serves on inside the container (the image's
``wool.port`` label)."""

SELECTOR: Final[Mapping[str, str]] = MappingProxyType(dict([_native.DEFAULT_SELECTOR]))
"""Label every `DockerWorker` container carries, and `DockerDiscovery`'s default
filter."""

_DEFAULT_START_TIMEOUT: Final[float] = 60.0
"""Seconds ``start()`` waits for the server when the pool gives no timeout. An
interpreter plus wool's import takes about a second; slow disks and cold caches
take longer."""

WORKER_USER: Final[str] = "65532:65532"
"""The unprivileged ``uid:gid`` a worker runs as by default (the worker image's
``USER``; distroless's ``nonroot``)."""

NO_NEW_PRIVILEGES: Final[tuple[str, ...]] = ("no-new-privileges:true",)
"""The default ``security_opt``: no process in the container gains privileges
through setuid binaries or file capabilities."""

PIDS_LIMIT: Final[int] = 512
"""Default bound on processes and threads in a worker container."""

OOM_SCORE_ADJ: Final[int] = 500
"""Default OOM-kill preference: the kernel kills a worker before its owner."""

ULIMITS: Final[Mapping[str, int | tuple[int, int]]] = MappingProxyType(
    {"nofile": (8192, 8192)}
)
"""Default resource limits: name to a limit or ``(soft, hard)``."""

LOG_CONFIG: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "type": "local",
        "config": MappingProxyType({"max-size": "10m", "max-file": "3"}),
    }
)
"""Default log driver: Docker's ``local`` driver (compressed, rotated; ``docker
logs`` reads it), so what a container prints takes at most 30 MB of the host's
disk, whatever the daemon's own default."""

_MEMORY_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
)
"""docker-py's ``mem_limit`` suffixes."""


# public
class DockerWorker(Worker):
    """A wool worker whose server runs in a Docker container.

    Usable wherever `LocalWorker` is, including as a `WorkerPool` factory. On
    `start` the container is created from a wool worker image (see
    ``wool-docker image build``), labelled with the worker's complete metadata
    (the label schema in the README), attached to ``network``, started, and
    awaited until its gRPC server is bound; `metadata` then carries the
    container's address on that network. On `stop` the server drains per
    ``grace`` and the container and its anonymous volumes are removed.

    If this process dies, even by ``SIGKILL``, its containers stop and remove
    themselves: each container watches the stdin this process holds open.

    The worker always serves on the container's own network address. ``host``
    is accepted because `WorkerPool` passes its publisher's bind host (wool's
    ``LocalDiscovery`` prescribes ``127.0.0.1``, which a container cannot
    serve), and is otherwise ignored.

    .. code-block:: python

        pool = wool.WorkerPool(
            spawn=4,
            worker=lambda *tags, **kw: DockerWorker(
                *tags, image="wool-worker:latest", network="wool", **kw
            ),
            discovery=DockerDiscovery(network="wool"),
        )

    :param tags:
        Capability tags for filtering and selection.
    :param image:
        The worker image (built by ``wool-docker image build``).
    :param network:
        Network to attach; a Swarm attachable overlay works the same. ``None``
        uses Docker's default bridge.
    :param credentials:
        `WorkerCredentials` or a `WorkerCredentialsProvider` for TLS/mTLS. The
        key material is copied into the container's own filesystem, never into
        labels, environment or image layers.
    :param host:
        Accepted from `WorkerPool` and ignored; see above.
    :param identity:
        Workload identity to advertise; requires ``credentials``.
    :param port:
        Port the server binds inside the container.
    :param name_prefix:
        Container names are ``{name_prefix}-{uid prefix}``.
    :param labels:
        Extra container labels, e.g. what a custom `DockerDiscovery` filter
        selects on.
    :param environment:
        Extra environment variables.
    :param volumes:
        Bind mounts and volumes: ``["src:/dst:ro", ...]`` or docker-py's
        ``{"src": {"bind": "/dst", "mode": "ro"}}``.
    :param cpus:
        CPU limit in CPUs, like ``docker run --cpus``.
    :param mem_limit:
        Memory limit in bytes or with a ``k``/``m``/``g`` suffix.
    :param gpus:
        GPUs to request: a count, or ``"all"``.
    :param options:
        wool's `WorkerOptions`, as for `LocalWorker`: the server in the
        container is configured with them and advertises their ``channel``. A
        bare `ChannelOptions` is taken as ``WorkerOptions(channel=...)``.
    :param start_timeout:
        Seconds ``start()`` waits when called without a timeout.
    :param shutdown_grace_period:
        The server's own bound on a drain after its owner is gone.
    :param proxy_pool_ttl:
        Seconds the server keeps an idle proxy for nested routines, as for
        `LocalWorker`.
    :param backpressure:
        Admission hook, as for `LocalWorker`: called by the worker with a
        ``BackpressureContext`` for each task, ``True`` rejects it. It is
        pickled by value (cloudpickle, like a routine) and runs in the
        container, so it must not depend on this process's state.
    :param daemon:
        Accepted for `LocalWorker` compatibility; both of its meanings
        already hold for a container: its server is not a multiprocessing
        child, so it may always start child processes (what ``False`` allows
        a `LocalWorker`), and it always stops with its owner (what ``True``
        guarantees).
    :param docker_host:
        Docker Engine address (``unix://``, ``tcp://``, ``https://``);
        ``None`` follows ``DOCKER_HOST`` like the docker CLI.
    :param engine_access:
        What the container may reach of discovery, which its subscriber needs
        when a routine awaits another routine. ``"feed"`` (default): the
        worker records of the scopes this process subscribes to, served by
        this process on a socket only its own containers may use; the Engine
        itself stays out of reach. ``"socket"``: the Engine socket itself, i.e.
        full control of the host's Docker (trusted routines only). ``"none"``:
        nothing; nested routines find no workers. ``"proxy"``, the first
        version's name, means ``"feed"`` (deprecated).
    :param log_output:
        Forward the container's output to the ``wool_docker.worker`` logger.
    :param user:
        ``user[:group]`` the worker runs as; default `WORKER_USER`, an
        unprivileged uid. ``None`` takes the image's ``USER``. The entry point
        refuses to serve as root unless root is asked for here explicitly
        (``user="root"``/``"0"``) or ``WOOL_ALLOW_ROOT=1`` is set.
    :param read_only:
        Mount the root filesystem read-only (default), with size-bounded tmpfs
        for ``/tmp`` and the home directory ``/home/wool``; routines cannot
        patch the server they run in or fill the host's disk.
    :param tmpfs:
        More tmpfs mounts: path to mount options (``{"/cache": "size=1g"}``).
    :param cap_add:
        Capabilities to add back; every capability is dropped otherwise
        (``NET_RAW`` included, so a routine cannot open raw sockets).
    :param security_opt:
        ``--security-opt`` values; default `NO_NEW_PRIVILEGES`. Pass ``()`` to
        drop it, or add seccomp/AppArmor profiles.
    :param pids_limit:
        Most processes and threads the container may run at once (a fork bomb
        stops there); default `PIDS_LIMIT`, ``None`` for no limit.
    :param oom_score_adj:
        The container's OOM-kill preference; default `OOM_SCORE_ADJ`, so the
        kernel kills a worker before its owner. ``None`` leaves Docker's.
    :param ulimits:
        Resource limits, name to a limit or ``(soft, hard)``; default
        `ULIMITS`. ``None`` leaves the daemon's.
    :param log_config:
        docker-py style ``{"type": driver, "config": {...}}``; default
        `LOG_CONFIG`, bounded on disk. ``None`` uses the daemon's default.
    :param runtime:
        OCI runtime, e.g. gVisor's ``"runsc"`` or Kata's, for a kernel boundary
        between routines and the host; ``None`` is the daemon's default.
    :param extra:
        Additional metadata, strings to strings (wool carries it as
        ``map<string, string>``; it is published in a label).
    :raises ValueError:
        If an argument cannot describe a container.
    """

    _image: Final[str]
    _network: Final[str | None]
    _provider: Final[WorkerCredentialsProvider | None]
    _identity: Final[str | None]
    _port: Final[int]
    _name: Final[str]
    _labels: Final[dict[str, str]]
    _environment: Final[dict[str, str]]
    _binds: Final[list[str]]
    _nano_cpus: Final[int | None]
    _memory: Final[int | None]
    _gpus: Final[int | None]
    _options: Final[ChannelOptions]
    _server_options: Final[dict[str, Any]]
    _proxy_pool_ttl: Final[float]
    _backpressure: Final[bytes | None]
    _start_timeout: Final[float]
    _shutdown_grace: Final[float]
    _docker_host: Final[str | None]
    _engine_access: Final[str]
    _log_output: Final[bool]
    _sandbox: Final[dict[str, Any]]
    _handle: _native.WorkerHandle | None

    def __init__(
        self,
        *tags: str,
        image: str,
        network: str | None = None,
        credentials: WorkerCredentials | WorkerCredentialsProvider | None = None,
        host: str | None = None,
        identity: str | None = None,
        port: int = DEFAULT_PORT,
        name_prefix: str = "wool-worker",
        labels: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        volumes: Sequence[str] | Mapping[str, Mapping[str, str]] | None = None,
        cpus: float | None = None,
        mem_limit: int | str | None = None,
        gpus: int | str | None = None,
        options: WorkerOptions | ChannelOptions | None = None,
        start_timeout: float = _DEFAULT_START_TIMEOUT,
        shutdown_grace_period: float = 60.0,
        proxy_pool_ttl: float = 60.0,
        backpressure: BackpressureLike | None = None,
        daemon: bool | None = None,
        docker_host: str | None = None,
        engine_access: Literal["feed", "socket", "none", "proxy"] = "feed",
        log_output: bool = True,
        user: str | None = WORKER_USER,
        read_only: bool = True,
        tmpfs: Mapping[str, str] | None = None,
        cap_add: Sequence[str] = (),
        security_opt: Sequence[str] = NO_NEW_PRIVILEGES,
        pids_limit: int | None = PIDS_LIMIT,
        oom_score_adj: int | None = OOM_SCORE_ADJ,
        ulimits: Mapping[str, int | tuple[int, int]] | None = ULIMITS,
        log_config: Mapping[str, Any] | None = LOG_CONFIG,
        runtime: str | None = None,
        **extra: Any,
    ):
        super().__init__(*tags, **extra)
        if not image or not image.strip():
            raise ValueError("image must name a wool worker image")
        for tag in self._tags:
            if "," in tag:
                raise ValueError(
                    f"tag {tag!r} contains a comma; labels join tags with commas"
                )
        port = _native.check_port(port)
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name_prefix):
            raise ValueError(
                f"name_prefix {name_prefix!r} is not a valid container name"
            )
        # `not x > 0` also rejects NaN.
        if not start_timeout > 0 or not math.isfinite(start_timeout):
            raise ValueError("start_timeout must be a positive number of seconds")
        if not shutdown_grace_period > 0 or not math.isfinite(shutdown_grace_period):
            raise ValueError(
                "shutdown_grace_period must be a positive number of seconds"
            )
        if not proxy_pool_ttl > 0 or not math.isfinite(proxy_pool_ttl):
            raise ValueError("proxy_pool_ttl must be a positive number of seconds")
        if backpressure is not None and not callable(backpressure):
            raise TypeError(
                f"backpressure must be a callable taking a BackpressureContext, "
                f"got {backpressure!r}"
            )
        if daemon is not None and not isinstance(daemon, bool):
            raise TypeError(f"daemon must be a bool or None, got {daemon!r}")
        if engine_access == "proxy":
            warnings.warn(
                "engine_access='proxy' is now called 'feed': containers get worker "
                "records from this process, not a view of the Engine",
                DeprecationWarning,
                stacklevel=2,
            )
            engine_access = "feed"
        if engine_access not in ("feed", "socket", "none"):
            raise ValueError(
                "engine_access must be 'feed', 'socket' or 'none', "
                f"got {engine_access!r}"
            )
        # Rounded like `docker run --cpus`: 2.01 is 2_010_000_000, not one less.
        nano_cpus = None if cpus is None else _nano_cpus(cpus)
        self._provider = WorkerCredentialsProvider.coerce(credentials)
        self._identity = normalize_peer(identity, parameter="identity")
        if self._identity is not None and self._provider is None:
            raise ValueError(
                "identity requires credentials: it is proven by a name in the "
                "worker's certificate"
            )
        _native.check_extra(self._extra)  # fail now, not at start
        self._image = image
        self._network = network
        self._port = port
        self._name = f"{name_prefix}-{self._uid.hex[:12]}"
        self._labels = _string_map("labels", labels)
        self._environment = {str(k): str(v) for k, v in (environment or {}).items()}
        self._binds = _binds(volumes)
        self._nano_cpus = nano_cpus
        self._memory = _memory(mem_limit)
        self._gpus = _gpus(gpus)
        if options is None:
            options = WorkerOptions()
        elif isinstance(options, ChannelOptions):
            options = WorkerOptions(channel=options)
        elif not isinstance(options, WorkerOptions):
            raise TypeError(
                f"options must be WorkerOptions or ChannelOptions, got {options!r}"
            )
        self._options = options.channel
        self._server_options = _server_options(options)
        self._proxy_pool_ttl = proxy_pool_ttl
        # Pickled now: a hook that cannot travel fails here, not at start.
        self._backpressure = (
            None if backpressure is None else cloudpickle.dumps(backpressure)
        )
        self._start_timeout = start_timeout
        self._shutdown_grace = shutdown_grace_period
        self._docker_host = docker_host
        self._engine_access = engine_access
        self._log_output = log_output
        self._sandbox = _sandbox(
            user=user,
            read_only=read_only,
            tmpfs=tmpfs,
            cap_add=cap_add,
            security_opt=security_opt,
            pids_limit=pids_limit,
            oom_score_adj=oom_score_adj,
            ulimits=ulimits,
            log_config=log_config,
            runtime=runtime,
        )
        self._handle = None

    @property
    def address(self) -> str | None:
        """The worker's ``ip:port`` on its network, or ``None`` before start."""
        return self._info.address if self._info is not None else None

    @property
    def container(self) -> str | None:
        """The container's name while it runs, else ``None``."""
        return self._handle.name if self._handle is not None else None

    async def _start(self, timeout: float | None):
        """Create the container and wait until its server is bound.

        :param timeout:
            Seconds to wait; ``None`` uses ``start_timeout``.
        :raises ImageNotFoundError:
            If the image is not on the daemon.
        :raises ImageMismatchError:
            If the image's Python or wool version cannot serve this process.
        :raises NetworkNotFoundError:
            If ``network`` does not exist or cannot be joined.
        :raises ContainerFailedError:
            If the container exits before serving (with its exit code and
            last output).
        :raises WorkerStartTimeout:
            If the server is not bound in time.
        :raises EngineUnavailableError:
            If the Docker Engine cannot be reached.
        """
        tls = None
        if self._provider is not None:
            material = await self._provider.credentials
            tls = {
                "ca": material.ca_cert.decode(),
                "cert": material.worker_cert.decode(),
                "key": material.worker_key.decode(),
                "mutual": material.mutual,
            }
        config = self._config(tls)
        # The native core checks it against its one schema: an unknown or
        # missing key is a ValueError, never a silent default.
        self._handle = await _native.start_worker(
            config,
            timeout if timeout is not None else self._start_timeout,
            self._log_output,
            self._docker_host,
            self._standby(),
        )
        self._info = WorkerMetadata(
            uid=self._uid,
            address=self._handle.address,
            pid=self._handle.pid,
            version=self._handle.version or protocol.__version__,
            tags=frozenset(self._tags),
            extra=MappingProxyType(dict(self._extra)),
            secure=tls is not None,
            options=self._options,
            identity=self._identity,
        )

    def _config(self, tls: dict[str, Any] | None) -> dict[str, Any]:
        """This worker's configuration in the native core's one schema.

        :param tls:
            The TLS material, or ``None`` for a plaintext worker.
        """
        return {
            "image": self._image,
            "name": self._name,
            "network": self._network,
            "publication": {
                "uid": str(self._uid),
                "port": self._port,
                "tags": sorted(self._tags),
                "extra": dict(self._extra),
                "secure": tls is not None,
                "identity": self._identity,
                "options": options_fields(self._options),
                "network": self._network,
            },
            "selector": dict(SELECTOR),
            "labels": self._labels,
            "env": self._environment,
            "binds": self._binds,
            "nano_cpus": self._nano_cpus,
            "memory": self._memory,
            "gpus": self._gpus,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "wool_version": protocol.__version__,
            "tls": tls,
            "shutdown_grace": self._shutdown_grace,
            "server_options": self._server_options,
            "proxy_pool_ttl": self._proxy_pool_ttl,
            "backpressure": self._backpressure,
            "engine_access": self._engine_access,
            "sandbox": self._sandbox,
        }

    def _standby(self) -> _native.StandbyHandle | None:
        """The standby to claim a parked container from; ``None``: start one."""
        return None

    async def _stop(self, grace: float | None):
        """Drain the server per ``grace``, then remove the container.

        The removal runs in the native core and completes even if this
        coroutine is cancelled.

        :param grace:
            ``None`` cancels in-flight work at once; negative waits for the
            drain indefinitely; positive bounds it, after which the container
            is killed.
        """
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop(grace)


def _server_options(options: WorkerOptions) -> dict[str, Any]:
    """The server-side fields of `WorkerOptions` (all but ``channel``)."""
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name != "channel"
    }


def _sandbox(
    *,
    user: str | None,
    read_only: bool,
    tmpfs: Mapping[str, str] | None,
    cap_add: Sequence[str],
    security_opt: Sequence[str],
    pids_limit: int | None,
    oom_score_adj: int | None,
    ulimits: Mapping[str, int | tuple[int, int]] | None,
    log_config: Mapping[str, Any] | None,
    runtime: str | None,
) -> dict[str, Any]:
    """Check the confinement keywords and put them in the native core's shape."""
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise ValueError(f"user must be 'user[:group]' or None, got {user!r}")
    if not isinstance(read_only, bool):
        raise TypeError(f"read_only must be a bool, got {read_only!r}")
    for name, words in (("cap_add", cap_add), ("security_opt", security_opt)):
        if isinstance(words, str) or not all(
            isinstance(w, str) and w.strip() for w in words
        ):
            raise ValueError(
                f"{name} must be a list of non-empty strings, got {words!r}"
            )
    for path in tmpfs or {}:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"tmpfs paths must be absolute, got {path!r}")
    if pids_limit is not None and (
        isinstance(pids_limit, bool) or not isinstance(pids_limit, int) or pids_limit < 1
    ):
        raise ValueError(
            f"pids_limit must be a positive count or None, got {pids_limit!r}"
        )
    if oom_score_adj is not None and (
        isinstance(oom_score_adj, bool)
        or not isinstance(oom_score_adj, int)
        or not -1000 <= oom_score_adj <= 1000
    ):
        raise ValueError(
            f"oom_score_adj must be -1000..1000 or None, got {oom_score_adj!r}"
        )
    limits: dict[str, tuple[int, int]] = {}
    for name, limit in (ulimits or {}).items():
        soft, hard = limit if isinstance(limit, tuple) else (limit, limit)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard)):
            raise ValueError(
                f"ulimits[{name!r}] must be an int or (soft, hard), got {limit!r}"
            )
        if not 0 <= soft <= hard:
            raise ValueError(f"ulimits[{name!r}] needs 0 <= soft <= hard, got {limit!r}")
        limits[str(name)] = (soft, hard)
    log = None
    if log_config is not None:
        unknown = set(log_config) - {"type", "config"}
        driver = log_config.get("type")
        if unknown or not isinstance(driver, str) or not driver:
            raise ValueError(
                "log_config must be {'type': driver, 'config': {...}}, "
                f"got {dict(log_config)!r}"
            )
        log = (driver, _string_map("log_config['config']", log_config.get("config")))
    if runtime is not None and (not isinstance(runtime, str) or not runtime.strip()):
        raise ValueError(f"runtime must name an OCI runtime or be None, got {runtime!r}")
    return {
        "user": user,
        "read_only": read_only,
        "tmpfs": _string_map("tmpfs", tmpfs),
        "cap_add": list(cap_add),
        "security_opt": list(security_opt),
        "pids_limit": pids_limit,
        "oom_score_adj": oom_score_adj,
        "ulimits": limits,
        "log": log,
        "runtime": runtime,
    }


def _binds(volumes: Sequence[str] | Mapping[str, Mapping[str, str]] | None) -> list[str]:
    """Normalize docker-py style ``volumes`` to ``src:dst[:mode]`` binds."""
    if volumes is None:
        return []
    if isinstance(volumes, Mapping):
        binds = []
        for source, spec in volumes.items():
            if "bind" not in spec:
                raise ValueError(f"volume {source!r} needs a 'bind' destination")
            binds.append(f"{source}:{spec['bind']}:{spec.get('mode', 'rw')}")
        return binds
    if isinstance(volumes, str):
        raise ValueError(
            "volumes must be a list of 'src:dst[:mode]' strings or a mapping"
        )
    return [str(v) for v in volumes]


def _nano_cpus(cpus: float) -> int:
    """CPUs as Docker's billionths of a CPU, rounded like ``docker run --cpus``."""
    if isinstance(cpus, bool) or not isinstance(cpus, int | float):
        raise ValueError(f"cpus must be a number, got {cpus!r}")
    if not math.isfinite(cpus) or round(cpus * 1e9) < 1:
        raise ValueError(f"cpus must be a positive, finite number, got {cpus!r}")
    return round(cpus * 1e9)


def _string_map(name: str, mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Check that a mapping holds only strings (labels are text)."""
    result = dict(mapping or {})
    for key, value in result.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"{name} must map strings to strings; got {key!r}: {value!r}"
            )
    return result


def _memory(limit: int | str | None) -> int | None:
    """Parse docker-py's ``mem_limit`` (bytes, or ``512m``-style)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int | str):
        raise ValueError(f"mem_limit must be bytes or a size like 512m, got {limit!r}")
    if isinstance(limit, int):
        value = limit
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([bkmgBKMG]?)\s*", limit)
        if match is None:
            raise ValueError(f"mem_limit {limit!r} is not a size like 512m or 2g")
        value = int(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError("mem_limit must be positive")
    return value


def _gpus(gpus: int | str | None) -> int | None:
    """``"all"`` → -1 (Docker's "every GPU"), a count stays a count."""
    if gpus is None:
        return None
    if gpus == "all":
        return -1
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0:
        return gpus
    raise ValueError(f"gpus must be a positive count or 'all', got {gpus!r}")
