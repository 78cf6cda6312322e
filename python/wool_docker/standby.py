"""`Standby`: worker containers parked ahead of the pools that claim them.

The parking, claiming and refilling live in the native core; this module
checks the keywords (with `DockerWorker`'s rules) and hands pools a factory.
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import Any
from typing import Final
from typing import Literal

from wool.runtime.worker.auth import WorkerCredentials
from wool.runtime.worker.auth import WorkerCredentialsProvider
from wool.runtime.worker.base import ChannelOptions
from wool.runtime.worker.base import WorkerOptions

from wool_docker import _native
from wool_docker.worker import DockerWorker

_PARK_TIMEOUT: Final[float] = 60.0
"""Seconds a container may take to park (an interpreter and wool's import)."""

_PER_WORKER: Final[frozenset[str]] = frozenset(
    {
        "credentials",
        "host",
        "identity",
        "options",
        "backpressure",
        "shutdown_grace_period",
        "proxy_pool_ttl",
        "start_timeout",
    }
)
"""`DockerWorker`'s keywords that a claim can still decide; every other one
shapes the container, so it is the standby's."""

_CONTAINER: Final[frozenset[str]] = (
    frozenset(
        name
        for name, parameter in inspect.signature(
            DockerWorker.__init__
        ).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    )
    - _PER_WORKER
    - {"image", "network"}
)
"""`DockerWorker`'s keywords that shape a container: the standby's."""


# public
class Standby:
    """Worker containers parked ahead of the pools that claim them.

    A parked container is started, its interpreter up and wool imported, but it
    binds no server and no discovery announces it. A pool whose workers come
    from `worker` claims one per worker: the claim sends the worker's identity
    and configuration (TLS material included) over the container's stdin, the
    server binds, and the worker is ready in tens of milliseconds instead of a
    container start. When none is parked (or about to be), the worker starts a
    fresh container exactly as `DockerWorker` does.

    A claimed container is never parked again: it ran someone's routines. Its
    place is refilled once the pool is done with it (``refill="release"``, so
    refills never compete with the pool's first burst), or at once
    (``refill="claim"``). A parked container that dies is replaced.

    On exit every parked container is removed; claimed ones are their pools'.
    If this process dies, even by ``SIGKILL``, parked containers remove
    themselves, as every `DockerWorker` does.

    .. code-block:: python

        async with Standby("wool-worker:latest", network="wool", size=8) as standby:
            await standby.filled()
            for batch in batches:
                async with wool.WorkerPool(spawn=8, worker=standby.worker):
                    await asyncio.gather(*(work(x) for x in batch))

    :param image:
        The worker image, as for `DockerWorker`.
    :param network:
        Network to attach, as for `DockerWorker`.
    :param size:
        Containers to keep parked.
    :param refill:
        When a claimed container's place is filled again: ``"release"`` (when
        its worker stops) or ``"claim"`` (at once).
    :param park_timeout:
        Seconds a container may take to park.
    :param container:
        `DockerWorker`'s keywords that shape a container: ``labels``,
        ``environment``, ``volumes``, ``cpus``, ``mem_limit``, ``gpus``,
        ``port``, ``name_prefix``, ``publish``, ``engine_access``, ``pull``,
        ``docker_host``, ``log_output`` and the sandbox (``user``,
        ``read_only``, ``tmpfs``, ``cap_add``, ``security_opt``,
        ``pids_limit``, ``oom_score_adj``, ``ulimits``, ``log_config``,
        ``runtime``). Checked as `DockerWorker`
        checks them.
    :raises ValueError:
        If a keyword cannot describe a container, or is a worker's own.
    """

    def __init__(
        self,
        image: str,
        network: str | None = None,
        size: int = 4,
        *,
        refill: Literal["release", "claim"] = "release",
        park_timeout: float = _PARK_TIMEOUT,
        **container: Any,
    ):
        # The standby's own keywords are read by the native core's schema.
        self._keywords: _native.StandbyKeywords = {
            "size": size,
            "refill": refill,
            "park_timeout": park_timeout,
        }
        _native.check_standby(self._keywords)
        if own := sorted(_PER_WORKER & set(container)):
            raise ValueError(
                f"{own[0]} is each worker's own: pass it to the pool's workers "
                "(standby.worker), not to the Standby"
            )
        if "tags" in container or "extra" in container:
            raise ValueError("tags and extra are each worker's own")
        if unknown := sorted(set(container) - _CONTAINER):
            # DockerWorker would take it as extra: every claimed worker's
            # metadata, which is each worker's own (a typo must not hide there).
            raise ValueError(
                f"{unknown[0]} is not a keyword that shapes a container; a "
                "worker's extra goes to the pool's workers (standby.worker)"
            )
        # A worker of this shape checks every keyword with DockerWorker's rules.
        self._template = DockerWorker(image=image, network=network, **container)
        self._image = image
        self._network = network
        self._container = container
        self._size = size
        self._handle: _native.StandbyHandle | None = None

    @property
    def size(self) -> int:
        """Containers kept parked."""
        return self._size

    @property
    def parked(self) -> int:
        """Containers parked now (0 before entry and after exit)."""
        return self._handle.parked if self._handle is not None else 0

    async def __aenter__(self) -> Standby:
        """Check the image and network, and start parking in the background.

        :raises ImageNotFoundError:
            If the image is not on the daemon.
        :raises NetworkNotFoundError:
            If the network does not exist.
        """
        if self._handle is not None:
            raise RuntimeError("this Standby is already open")
        template = self._template
        self._handle = await _native.open_standby(
            template._config(None),
            self._keywords,
            self._container.get("name_prefix", "wool-worker"),
            template._log_output,
            template._docker_host,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Remove every parked container; claimed ones stay with their pools."""
        await self.close()

    async def close(self) -> None:
        """Remove every parked container and stop parking (what exit does)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.close()

    async def filled(self) -> None:
        """Wait until `size` containers are parked.

        :raises RuntimeError:
            Before entry or after exit.
        :raises ContainerFailedError:
            If a container exits before it parks (the next call tries again).
        """
        if self._handle is None:
            raise RuntimeError("enter the Standby (async with) before waiting on it")
        await self._handle.filled()

    def worker(
        self,
        *tags: str,
        credentials: WorkerCredentials | WorkerCredentialsProvider | None = None,
        host: str | None = None,
        identity: str | None = None,
        options: WorkerOptions | ChannelOptions | None = None,
        backpressure: Any = None,
        shutdown_grace_period: float = 60.0,
        proxy_pool_ttl: float = 60.0,
        start_timeout: float | None = None,
        **extra: Any,
    ) -> DockerWorker:
        """A worker that claims a parked container: a `WorkerPool` factory.

        Takes what the pool passes (``credentials``, ``host``, ``identity``)
        and `DockerWorker`'s per-worker keywords; ``extra`` is the worker's
        metadata, as for `DockerWorker`. The container's shape is the
        standby's. Outside the standby's ``async with`` the worker starts a
        fresh container.

        :returns:
            A `DockerWorker`.
        """
        more: dict[str, Any] = {}
        if start_timeout is not None:
            more["start_timeout"] = start_timeout
        return _StandbyWorker(
            self,
            *tags,
            image=self._image,
            network=self._network,
            credentials=credentials,
            host=host,
            identity=identity,
            options=options,
            backpressure=backpressure,
            shutdown_grace_period=shutdown_grace_period,
            proxy_pool_ttl=proxy_pool_ttl,
            **more,
            **self._container,
            **extra,
        )


class _StandbyWorker(DockerWorker):
    """A `DockerWorker` that claims its container from a `Standby` when it can."""

    def __init__(self, standby: Standby, *tags: str, **kwargs: Any):
        super().__init__(*tags, **kwargs)
        self._from = standby

    def _standby(self) -> _native.StandbyHandle | None:
        return self._from._handle
