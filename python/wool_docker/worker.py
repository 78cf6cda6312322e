"""`DockerWorker`: a wool worker that runs in a Docker container.

The container lifecycle (create, attach, start, readiness, drain, removal) lives in
the native core; this module converts wool's arguments and results.
"""

from __future__ import annotations

import dataclasses
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

    The worker is advertised where this process reaches it: at the container's
    address on its network when this process can route there (a local Engine
    on this host's network, or an owner in a container on that network), else
    at a port the Engine publishes on its host (Docker Desktop, rootless
    Docker, a remote ``tcp://`` Engine); ``publish`` forces either. ``host``
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
        The worker image (built by ``wool-docker image build``), on the
        Engine or in a registry (``registry.example:5000/team/worker:1``).
    :param pull:
        When the image is pulled from its registry before a start:
        ``"missing"`` (default) when the Engine lacks it, ``"always"``, or
        ``"never"``. Concurrent starts of one image share one pull. Registry
        credentials are read as the docker CLI reads them (``config.json``'s
        ``auths``, ``credHelpers``, ``credsStore``).
    :param network:
        Network to attach; a Swarm attachable overlay works the same. ``None``
        uses Docker's default bridge.
    :param publish:
        ``None`` (default): decided at start, as above. ``True``: publish the
        port on the Engine's host (bound to loopback where the Engine is on
        this machine, to every address of a remote one) and advertise that
        host and the port the Engine picked. ``False``: the container's own
        address on ``network``.
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
        Docker Engine address (``unix://``, ``tcp://``, ``https://``,
        ``ssh://``); ``None`` follows ``DOCKER_HOST`` like the docker CLI.
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

    _provider: Final[WorkerCredentialsProvider | None]
    _identity: Final[str | None]
    _options: Final[ChannelOptions]
    _keywords: Final[_native.WorkerConfig]
    _docker_host: Final[str | None]
    _log_output: Final[bool]
    _handle: _native.WorkerHandle | None

    def __init__(
        self,
        *tags: str,
        image: str,
        pull: Literal["missing", "always", "never"] = "missing",
        network: str | None = None,
        publish: bool | None = None,
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
        # Only what needs Python is handled here: wool's types, the hook's
        # pickle, warnings. Every other keyword goes to the native core's one
        # schema as given, and is checked there now, not at start.
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
        if options is None:
            options = WorkerOptions()
        elif isinstance(options, ChannelOptions):
            options = WorkerOptions(channel=options)
        elif not isinstance(options, WorkerOptions):
            raise TypeError(
                f"options must be WorkerOptions or ChannelOptions, got {options!r}"
            )
        self._provider = WorkerCredentialsProvider.coerce(credentials)
        self._identity = normalize_peer(identity, parameter="identity")
        self._options = options.channel
        self._docker_host = docker_host
        self._log_output = log_output
        self._keywords = {
            "image": image,
            "pull": pull,
            "name": f"{name_prefix}-{self._uid.hex[:12]}",
            "network": network,
            "publication": {
                "uid": str(self._uid),
                "port": port,
                "tags": sorted(self._tags),
                "extra": dict(self._extra),
                "secure": self._provider is not None,
                "identity": self._identity,
                "options": options_fields(self._options),
                "network": network,
                "publish": publish,
            },
            "selector": dict(SELECTOR),
            "labels": labels or {},
            # Environment values are text; Python's str() is what users expect.
            "environment": {str(k): str(v) for k, v in (environment or {}).items()},
            "volumes": volumes,
            "cpus": cpus,
            "mem_limit": mem_limit,
            "gpus": gpus,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "wool_version": protocol.__version__,
            "start_timeout": start_timeout,
            "shutdown_grace_period": shutdown_grace_period,
            "engine_access": engine_access,
            "server_options": _server_options(options),
            "proxy_pool_ttl": proxy_pool_ttl,
            # Pickled now: a hook that cannot travel fails here, not at start.
            "backpressure": (
                None if backpressure is None else cloudpickle.dumps(backpressure)
            ),
            "sandbox": {
                "user": user,
                "read_only": read_only,
                "tmpfs": tmpfs,
                "cap_add": cap_add,
                "security_opt": security_opt,
                "pids_limit": pids_limit,
                "oom_score_adj": oom_score_adj,
                "ulimits": ulimits,
                "log_config": log_config,
                "runtime": runtime,
            },
            "swarm": self._placement(),
            "tls": None,
        }
        _native.check_worker_config(self._config(None))
        self._handle = None

    @property
    def address(self) -> str | None:
        """Where this process reaches the worker (``host:port``), or ``None``
        before start."""
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
            If the image is not on the daemon (``pull="never"``) or not in
            its registry.
        :raises RegistryAuthError:
            If the registry refuses the credentials, or finds none.
        :raises RegistryUnreachableError:
            If the Engine cannot reach or trust the registry.
        :raises ImagePullError:
            If a pull fails otherwise.
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
        tls: _native.Tls | None = None
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
            timeout,
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

    def _config(self, tls: _native.Tls | None) -> _native.WorkerConfig:
        """This worker's keywords in the native core's one schema.

        :param tls:
            The TLS material, or ``None`` for a plaintext worker (and before
            start, when the credentials are not yet awaited).
        """
        return {**self._keywords, "tls": tls}

    def _placement(self) -> _native.SwarmPlacement | None:
        """Where the Swarm places this worker's task; ``None``: a container."""
        return None

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
