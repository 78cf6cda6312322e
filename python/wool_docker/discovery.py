"""`DockerDiscovery`: find wool workers that run as Docker containers.

Discovery is label based: the native core lists the containers that carry the
selector labels, follows the Engine's event stream, tracks which of them serve,
and reconnects and re-lists after any gap. This module turns its records into
wool's `DiscoveryEvent` and `WorkerMetadata`.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncGenerator
from collections.abc import AsyncIterator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from typing import Final

from wool.runtime.discovery.base import Discovery
from wool.runtime.discovery.base import DiscoveryEvent
from wool.runtime.discovery.base import DiscoveryEventType
from wool.runtime.discovery.base import DiscoveryPublisherLike
from wool.runtime.discovery.base import DiscoverySubscriberLike
from wool.runtime.discovery.base import PredicateFunction
from wool.runtime.discovery.pool import SubscriberMeta
from wool.runtime.worker.metadata import WorkerMetadata
from wool.utilities.afilter import afilter

from wool_docker import _native
from wool_docker._convert import metadata_from_record
from wool_docker.exceptions import MalformedLabelsWarning
from wool_docker.exceptions import NotPublishedError

DEFAULT_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    dict([_native.DEFAULT_SELECTOR])
)
"""The label `DockerWorker` puts on every container it creates."""


# public
class DockerDiscovery(Discovery):
    """Discover wool workers running as Docker containers, by label.

    Works for containers started by `DockerWorker`, ``docker run``, Compose or
    Swarm alike: Swarm tasks are containers too, and Swarm labels every task
    with ``com.docker.swarm.service.name``. A container is announced as soon as
    its worker serves (the worker image prints a ready line the moment its
    port is bound) or its healthcheck reports healthy, and dropped as soon as
    it is being stopped, killed, dies, is paused, turns unhealthy or leaves the
    scoped network. Worker metadata comes from the container's labels; see the
    label schema in the README.

    :param network:
        Only containers on this network, addressed by their IP on it. Without
        it every matching container is discovered, addressed on its
        ``wool.network`` label's network, else its only network, else its
        first user-defined network by name.
    :param labels:
        Labels a container must carry, all of them; an empty value matches
        any value. Defaults to ``{"wool.worker": "true"}``, and then a pool
        uses its own workers, like a `LocalWorker` pool: of the containers
        that `DockerWorker` creates (``wool.docker.managed=true``) only those
        this process created are discovered, while containers no
        `DockerWorker` manages (``docker run``, Compose, Swarm tasks) are
        discovered by every process. Explicit ``labels`` select exactly what
        they say, whichever process created it.
    :param filter:
        Default predicate applied by `subscriber`.
    :param docker_host:
        Docker Engine address; ``None`` follows ``DOCKER_HOST`` like the
        docker CLI.
    :param shared:
        Also discover the `DockerWorker` containers of other processes (any
        user's) that carry the selector: for a pool that several processes
        share on purpose. Routines of one process then run in containers of
        another, with its image, environment and mounts, and fail when it
        exits. Default ``False``.
    :raises ValueError:
        If ``labels`` is empty (that would discover every container).

    Example — an ephemeral pool of Docker workers:

    .. code-block:: python

        async with wool.WorkerPool(
            spawn=4,
            worker=lambda *tags, **kw: DockerWorker(
                *tags, image="wool-worker:latest", network="wool", **kw
            ),
            discovery=DockerDiscovery(network="wool"),
        ):
            ...

    Example — the tasks of a Swarm service, subscriber only:

    .. code-block:: python

        discovery = DockerDiscovery(
            network="wool-overlay",
            labels={"com.docker.swarm.service.name": "wool-worker"},
        )
        async with wool.WorkerPool(discovery=discovery.subscriber):
            ...
    """

    _network: Final[str | None]
    _labels: Final[tuple[tuple[str, str], ...]]
    _filter: Final[PredicateFunction | None]
    _docker_host: Final[str | None]
    _owner: Final[str | None]
    _shared: Final[bool]

    def __init__(
        self,
        network: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        filter: PredicateFunction | None = None,
        docker_host: str | None = None,
        shared: bool = False,
    ):
        selected = dict(DEFAULT_LABELS if labels is None else labels)
        if not selected:
            raise ValueError(
                "labels must select something; {} would match every container"
            )
        for key, value in selected.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ValueError(
                    f"labels must map label keys to strings: {key!r}={value!r}"
                )
        if network is not None and not network:
            raise ValueError("network must be a network name or id, or None")
        self._network = network
        self._labels = tuple(sorted(selected.items()))
        self._filter = filter
        self._docker_host = docker_host
        self._shared = shared
        # Fixed here and pickled with the discovery, so its subscribers filter
        # by this process's containers wherever they are unpickled.
        self._owner = (
            _native.discovery_owner() if labels is None and not shared else None
        )

    def __hash__(self) -> int:
        return hash(
            (type(self), self._network, self._labels, self._docker_host, self._owner)
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DockerDiscovery):
            return (self._network, self._labels, self._docker_host, self._owner) == (
                other._network,
                other._labels,
                other._docker_host,
                other._owner,
            )
        return NotImplemented

    def __repr__(self) -> str:
        shared = ", shared=True" if self._shared else ""
        return (
            f"DockerDiscovery(network={self._network!r}, "
            f"labels={dict(self._labels)!r}{shared})"
        )

    @property
    def network(self) -> str | None:
        """The network discovery is scoped to, if any."""
        return self._network

    @property
    def labels(self) -> Mapping[str, str]:
        """The labels a container must carry."""
        return MappingProxyType(dict(self._labels))

    @property
    def owner(self) -> str | None:
        """The owner token whose `DockerWorker` containers alone are discovered
        (``wool.docker.owner``), or ``None`` when every process's are."""
        return self._owner

    @property
    def publisher(self) -> DiscoveryPublisherLike:
        """A new publisher: confirms that a worker's container carries its record.

        :returns:
            A `DockerDiscovery.Publisher`.
        """
        return self.Publisher(self._labels, self._docker_host)

    @property
    def subscriber(self) -> DiscoverySubscriberLike:
        """A subscriber using the constructor's default filter.

        :returns:
            A subscriber yielding `DiscoveryEvent` for matching containers.
        """
        return self.subscribe()

    def subscribe(
        self, filter: PredicateFunction | None = None
    ) -> DiscoverySubscriberLike:
        """Create a subscriber, optionally filtered.

        :param filter:
            Only workers for which the predicate returns ``True`` are
            reported. Falls back to the constructor's filter.
        :returns:
            A picklable subscriber.
        """
        return _SubscriberView(self, filter if filter is not None else self._filter)

    def _iterate(
        self, filter: PredicateFunction | None
    ) -> AsyncIterator[DiscoveryEvent]:
        """Iterate the shared subscriber for this scope, optionally filtered."""
        subscriber = self.Subscriber(
            self._labels, self._network, self._docker_host, self._owner
        )
        if filter is not None:
            return afilter(filter, subscriber).__aiter__()
        return subscriber.__aiter__()

    class Publisher:
        """Publisher for containers whose labels already are the publication.

        Docker labels cannot change after a container is created, so a
        container's labels are its record: `DockerWorker` writes them at
        creation, and Compose or Swarm users write them in their service
        definitions. ``publish("worker-added" | "worker-updated", metadata)``
        therefore only confirms that a running container carries that worker's
        uid (a claimed `Standby` container states it in its ready line
        instead), and ``publish("worker-dropped", ...)`` does nothing, so
        teardown never blocks on the Engine.

        :param labels:
            The discovery's selector, as sorted pairs.
        :param docker_host:
            Docker Engine address.
        """

        #: Containers serve on their own network address, so workers bind
        #: every interface; `DockerWorker` ignores the host it is given.
        bind_host: str = "0.0.0.0"

        _labels: Final[tuple[tuple[str, str], ...]]
        _docker_host: Final[str | None]

        def __init__(self, labels: tuple[tuple[str, str], ...], docker_host: str | None):
            self._labels = labels
            self._docker_host = docker_host

        async def __aenter__(self) -> DockerDiscovery.Publisher:
            """Enter the publisher; it holds no resources.

            :returns:
                Self.
            """
            return self

        async def __aexit__(self, *_: Any) -> None:
            """Exit the publisher."""

        async def publish(
            self, type: DiscoveryEventType, metadata: WorkerMetadata
        ) -> None:
            """Confirm a worker's container carries its record.

            :param type:
                The event type.
            :param metadata:
                The worker's metadata.
            :raises NotPublishedError:
                If no running container carries ``wool.uid=<uid>`` and the
                selector labels (e.g. a `LocalWorker` was published).
            :raises RuntimeError:
                If ``type`` is not a discovery event type.
            """
            match type:
                case "worker-dropped":
                    return
                case "worker-added" | "worker-updated":
                    uid = str(metadata.uid)
                    selector = {**dict(self._labels), "wool.uid": uid}
                    found = await _native.list_workers(selector, None, self._docker_host)
                    if not found:
                        # A claimed standby container's uid is in its ready
                        # line, not its labels (fixed before it had a worker).
                        claimed = {**dict(self._labels), _native.STANDBY_LABEL: "true"}
                        found = [
                            (record, health)
                            for record, health in await _native.list_workers(
                                claimed, None, self._docker_host
                            )
                            if record["uid"] == uid
                        ]
                    if not found:
                        selected = ", ".join(f"{k}={v}" for k, v in self._labels)
                        raise NotPublishedError(
                            f"worker {metadata.uid} ({metadata.address}) has no running "
                            f"container labelled wool.uid={metadata.uid} and "
                            f"{selected}; "
                            "Docker labels are fixed at creation, so DockerDiscovery "
                            "only publishes DockerWorker containers or containers "
                            "labelled by hand (see the label schema). Use DockerWorker, "
                            "or another discovery for other workers."
                        )
                case _:
                    raise RuntimeError(f"Unexpected discovery event type: {type}")

    class Subscriber(  # type: ignore[call-arg]  # SubscriberMeta's key=
        metaclass=SubscriberMeta,
        key=lambda cls, labels, network, host, owner=None: (
            cls,
            labels,
            network,
            host,
            owner,
        ),
    ):
        """Subscriber yielding discovery events for matching containers.

        Each iteration first yields every serving container as
        ``worker-added``, then deltas. Iterations are independent and
        cancellation safe; equal subscribers share one Engine event stream.
        Subscribers pickle by their arguments and reconnect wherever they are
        unpickled: to the Engine, or, inside a `DockerWorker` container running
        a nested routine, to the owner's worker feed (``WOOL_DOCKER_FEED``),
        which serves the scopes the owner subscribes to and nothing else.

        A matching container whose labels cannot be parsed is skipped with one
        `MalformedLabelsWarning` naming it and the label.

        :param labels:
            Selector labels, as sorted pairs.
        :param network:
            Network scope.
        :param docker_host:
            Docker Engine address.
        :param owner:
            Owner token: of the `DockerWorker` containers only this owner's
            (containers no `DockerWorker` manages pass); ``None``: every one.
        :raises NetworkNotFoundError:
            On iteration, if ``network`` does not exist.
        :raises EngineUnavailableError:
            On iteration, if the Engine cannot be reached at all.
        :raises WorkerFeedError:
            On iteration inside a `DockerWorker` container, if the owner's
            feed refuses the scope (it is not one the owner subscribes to).
        """

        _labels: Final[tuple[tuple[str, str], ...]]
        _network: Final[str | None]
        _docker_host: Final[str | None]
        _owner: Final[str | None]

        def __init__(
            self,
            labels: tuple[tuple[str, str], ...],
            network: str | None,
            docker_host: str | None,
            owner: str | None = None,
        ) -> None:
            self._labels = labels
            self._network = network
            self._docker_host = docker_host
            self._owner = owner

        def __aiter__(self) -> AsyncIterator[DiscoveryEvent]:
            return self._event_stream()

        async def _shutdown(self) -> None:
            """Release subscriber-level resources at cache eviction (none)."""

        @staticmethod
        def _event(kind: str, payload: Any) -> DiscoveryEvent | None:
            """Turn one native change into a `DiscoveryEvent` (or a warning).

            :returns:
                The event, or ``None`` for a change that was only a warning.
            """
            if kind == "warning":
                warnings.warn(str(payload), MalformedLabelsWarning, stacklevel=3)
                return None
            try:
                metadata = metadata_from_record(payload)
            except (ValueError, TypeError) as e:
                # Labels the core could not judge (e.g. option types).
                if kind == "worker-added":
                    warnings.warn(
                        f"skipping container {payload.get('container_name')}: {e}; "
                        "fix its labels (see the label schema)",
                        MalformedLabelsWarning,
                        stacklevel=3,
                    )
                return None
            return DiscoveryEvent(kind, metadata=metadata)  # type: ignore[arg-type]

        async def _event_stream(self) -> AsyncGenerator[DiscoveryEvent, None]:
            """Stream discovery events from the native core.

            :yields:
                Discovery events as workers are added, updated or dropped.
            """
            subscription = await _native.subscribe(
                dict(self._labels), self._network, self._docker_host, self._owner
            )
            pending: asyncio.Future[Any] | None = None
            try:
                while True:
                    # Shielded: a cancelled iteration must not cancel the native
                    # future, whose completion would then call into Python from a
                    # runtime thread at an unknown time (at shutdown, possibly
                    # while the interpreter finalizes). `finally` closes and awaits it.
                    pending = asyncio.ensure_future(subscription.next())
                    batch = await asyncio.shield(pending)
                    if batch is None:
                        return
                    for kind, payload in batch:
                        event = self._event(kind, payload)
                        if event is not None:
                            yield event
            finally:
                subscription.close()
                if pending is not None and not pending.done():
                    # close() makes it return None at once.
                    with contextlib.suppress(BaseException):
                        await pending


class _SubscriberView:
    """The object `DockerDiscovery.subscriber` returns.

    Iterates the scope's shared `DockerDiscovery.Subscriber` and is also
    `DiscoveryLike` itself, so ``WorkerPool(discovery=d.subscriber)`` runs an
    external pool on wool 0.15, which requires a `DiscoveryLike` there, as well
    as on wool versions that accept a bare subscriber. Picklable: it carries
    its `DockerDiscovery` and filter, and reconnects wherever it is iterated.

    :param discovery:
        The discovery it belongs to.
    :param filter:
        Predicate applied to every event, or ``None``.
    """

    def __init__(self, discovery: DockerDiscovery, filter: PredicateFunction | None):
        self._discovery = discovery
        self._filter = filter

    def __aiter__(self) -> AsyncIterator[DiscoveryEvent]:
        return self._discovery._iterate(self._filter)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _SubscriberView):
            return (self._discovery, self._filter) == (other._discovery, other._filter)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._discovery, self._filter))

    @property
    def publisher(self) -> DiscoveryPublisherLike:
        """The discovery's publisher (see `DockerDiscovery.Publisher`)."""
        return self._discovery.publisher

    @property
    def subscriber(self) -> DiscoverySubscriberLike:
        """This subscriber."""
        return self

    def subscribe(
        self, filter: PredicateFunction | None = None
    ) -> DiscoverySubscriberLike:
        """A subscriber of the same scope with another filter."""
        return self._discovery.subscribe(filter if filter is not None else self._filter)
