"""`SwarmWorker`: a wool worker placed by Docker Swarm on any node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import Literal

from wool_docker import _native
from wool_docker.worker import DockerWorker

__all__ = ["SwarmWorker"]


class SwarmWorker(DockerWorker):
    """A wool worker that runs as a one-task Swarm service, on any node.

    Usable wherever `DockerWorker` is, including as a `WorkerPool` factory,
    with the same keywords where Swarm has them. On `start` a service of one
    task is created on ``network`` (an attachable overlay): its container is
    the one `DockerWorker` would create, with the worker's labels, never
    restarted, with no virtual IP and no published port. The Swarm places the
    task; `start` waits until its server serves and advertises the task's
    address on the overlay. On `stop` the server drains per ``grace`` and the
    service is removed.

    The task connects back to this process over the overlay (its lifeline)
    and stops when that connection ends, so if this process dies, even by
    ``SIGKILL``, its tasks on every node stop within seconds; the service
    objects left behind are removed by the next `SwarmWorker` start on that
    manager and by ``wool-docker prune``.

    So this process must run on a Swarm manager's Engine (or reach one with
    ``docker_host``), in a container attached to ``network``: the pool reaches
    its workers there, and they reach it. Every node the task may land on
    needs the image (loaded there, or pulled from a registry).

    Swarm has no place for some of `DockerWorker`'s settings: ``gpus``,
    ``runtime``, ``security_opt`` and ``oom_score_adj`` are refused, and so is
    ``engine_access="socket"`` (the task may run where this process's Engine
    socket is not). The worker feed reaches the task wherever it runs, through
    a relay on a second connection to the lifeline, so nested routines find
    the pool's workers. tmpfs mounts get their size and mode only.

    .. code-block:: python

        pool = wool.WorkerPool(
            spawn=8,
            worker=lambda *tags, **kw: SwarmWorker(
                *tags, image="wool-worker:latest", network="wool", **kw
            ),
            discovery=DockerDiscovery(network="wool"),
        )

    :param tags:
        Capability tags, as for `DockerWorker`.
    :param image:
        The worker image; every node the task may run on needs it.
    :param network:
        An attachable overlay network that this process is attached to.
    :param constraints:
        Placement constraints, as ``docker service create --constraint``
        takes them: ``("node.role==worker", "node.labels.gpu==true")``.
    :param reserve_cpus:
        CPUs the Swarm reserves for the task on its node.
    :param reserve_memory:
        Memory the Swarm reserves, in bytes or with a ``k``/``m``/``g``
        suffix.
    :param lifeline_host:
        The address the task connects back to; default: this process's
        address on ``network``, read from the Engine.
    :param engine_access:
        ``"feed"`` (the default) or ``"none"``; see above.
    :param kwargs:
        `DockerWorker`'s other keywords.
    :raises ValueError:
        If an argument cannot describe a Swarm worker.
    """

    def __init__(
        self,
        *tags: str,
        image: str,
        network: str,
        constraints: Sequence[str] = (),
        reserve_cpus: float | None = None,
        reserve_memory: int | str | None = None,
        lifeline_host: str | None = None,
        engine_access: Literal["feed", "socket", "none", "proxy"] = "feed",
        security_opt: Sequence[str] = (),
        oom_score_adj: int | None = None,
        gpus: int | str | None = None,
        runtime: str | None = None,
        **kwargs: Any,
    ):
        if not network:
            raise ValueError("a SwarmWorker needs network=, an attachable overlay")
        # Read by `_placement` during DockerWorker's check of every keyword,
        # which refuses what a Swarm service has no place for.
        self._swarm: _native.SwarmPlacement = {
            "constraints": constraints,
            "reserve_cpus": reserve_cpus,
            "reserve_memory": reserve_memory,
            "lifeline_host": lifeline_host,
        }
        super().__init__(
            *tags,
            image=image,
            network=network,
            engine_access=engine_access,
            security_opt=security_opt,
            oom_score_adj=oom_score_adj,
            gpus=gpus,
            runtime=runtime,
            **kwargs,
        )

    @property
    def service(self) -> str | None:
        """The service's name while it runs, else ``None``."""
        return self.container

    @property
    def node(self) -> str | None:
        """The id of the Swarm node its task runs on, while it runs."""
        return self._handle.node if self._handle is not None else None

    def _placement(self) -> _native.SwarmPlacement | None:
        """The Swarm placement, as the user gave it."""
        return self._swarm
