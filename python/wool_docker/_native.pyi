"""Stub for the native core, ``wool_docker._native`` (Rust, PyO3).

Every awaitable here is an asyncio future created by pyo3-async-runtimes, not a
coroutine: await it directly; wrap it with ``asyncio.ensure_future`` (not
``create_task``) to schedule it.
"""

from collections.abc import Awaitable
from collections.abc import Mapping
from typing import Any
from typing import final

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SELECTOR",
    "PARKED_PREFIX",
    "READY_PREFIX",
    "STANDBY_LABEL",
    "StandbyHandle",
    "Subscription",
    "WorkerHandle",
    "__version__",
    "build_image",
    "check_extra",
    "check_port",
    "check_worker_config",
    "discovery_owner",
    "engine_info",
    "inspect_image",
    "list_workers",
    "open_standby",
    "owner_token",
    "prune",
    "remove_image",
    "start_worker",
    "subscribe",
]

__version__: str
READY_PREFIX: str
"""Start of the line the worker image prints once its server is bound."""
PARKED_PREFIX: str
"""Start of the line a standby container prints once it is parked."""
STANDBY_LABEL: str
"""The label marking a standby container, whose worker its ready line states."""
DEFAULT_PORT: int
"""Port the worker image serves on inside the container."""
DEFAULT_SELECTOR: tuple[str, str]
"""The label every DockerWorker container carries and discovery's default filter."""

Record = dict[str, Any]
"""A worker record: uid, address, version, tags, extra (JSON text), secure,
observed_ns (Engine time of the observation behind an event; 0 from a listing),
identity, options (JSON text or None), pid, container_id, container_name,
network."""

def engine_info(host: str | None = None) -> Awaitable[dict[str, str]]:
    """Connect (or reuse the connection): ``{"host": ..., "api_version": ...}``."""

def inspect_image(image: str, host: str | None = None) -> Awaitable[dict[str, Any]]:
    """``{"id": str, "labels": dict[str, str]}``; raises ImageNotFoundError."""

def build_image(context: bytes, tag: str, host: str | None = None) -> Awaitable[str]:
    """Build from an uncompressed tar context; returns the image id."""

def remove_image(image: str, host: str | None = None) -> Awaitable[None]:
    """Remove an image; a missing one is fine."""

WorkerConfig = Mapping[str, Any]
"""A worker container's config as ``DockerWorker`` builds it: exactly the keys
of the native core's ``WorkerConfig`` (nested: ``publication``, ``tls``,
``sandbox``), values as plain Python objects (``backpressure`` as bytes). An
unknown or missing key is a ``ValueError``."""

def start_worker(
    config: WorkerConfig,
    timeout: float,
    log_output: bool = True,
    host: str | None = None,
    standby: StandbyHandle | None = None,
) -> Awaitable[WorkerHandle]:
    """Start a worker container from its config and wait until it serves; with
    ``log_output`` its output goes to the ``wool_docker.worker`` logger. With
    ``standby``, a parked container of it is claimed when one is free (or about
    to be). A bad config raises ``ValueError`` here, before any Engine I/O."""

def open_standby(
    config: WorkerConfig,
    size: int,
    refill: str,
    timeout: float,
    name_prefix: str,
    log_output: bool = True,
    host: str | None = None,
) -> Awaitable[StandbyHandle]:
    """Check the image and network of ``config`` (a worker config whose
    per-worker values are unused) and park ``size`` containers of its shape in
    the background. ``refill``: ``"release"`` or ``"claim"``."""

def check_worker_config(config: WorkerConfig) -> None:
    """Check a config exactly as ``start_worker`` reads it; ``ValueError`` if it
    does not match."""

def check_port(port: int | str) -> int:
    """The port rule, 1-65535, for a number or its text; ``ValueError`` if not."""

def check_extra(extra: Mapping[Any, Any] | str) -> dict[str, str]:
    """The ``extra`` rule, strings to strings, for a mapping or its JSON object
    text; ``ValueError`` if not."""

def prune(
    all: bool = False,
    host: str | None = None,
    labels: list[str] = ...,
    any_user: bool = False,
) -> Awaitable[tuple[list[str], int]]:
    """Remove this user's orphaned (or all) managed containers (``any_user``:
    every user's); returns their names and how many containers were left
    because their user cannot be told."""

def discovery_owner() -> str:
    """The owner a ``DockerDiscovery`` built here filters for by default: this
    process's token, or inside a worker container that reads its owner's feed,
    the owner's."""

def owner_token() -> str:
    """This process's owner token (``wool.docker.owner``)."""

def subscribe(
    selector: dict[str, str],
    network: str | None = None,
    host: str | None = None,
    owner: str | None = None,
) -> Awaitable[Subscription]:
    """Subscribe to worker containers carrying ``selector`` (with ``owner``,
    managed containers of that owner only)."""

def list_workers(
    selector: dict[str, str], network: str | None = None, host: str | None = None
) -> Awaitable[list[tuple[Record, str | None]]]:
    """The workers a subscriber would see now, with their health."""

@final
class WorkerHandle:
    """A serving worker container owned by this process."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def node(self) -> str | None:
        """The Swarm node a Swarm worker's task runs on; ``None`` for a container."""
    @property
    def timings(self) -> list[tuple[str, float]]:
        """Where the start went: ``[(phase, seconds), ...]`` in order."""
    @property
    def exited(self) -> bool: ...
    def stop(self, grace: float | None = None) -> Awaitable[None]:
        """Drain per ``grace`` and remove the container."""

@final
class StandbyHandle:
    """Containers parked for the workers of pools."""

    @property
    def parked(self) -> int:
        """Containers parked now."""
    def filled(self) -> Awaitable[None]:
        """Park until the standby is full; raises the first failure to park."""
    def close(self) -> Awaitable[None]:
        """Remove every parked container and stop parking."""

@final
class Subscription:
    """A stream of discovery changes for one iteration."""

    def next(self) -> Awaitable[list[tuple[str, Record | str]] | None]:
        """The next changes, in order: every ``(kind, record)`` queued when the
        first arrives (kind ``"warning"`` carries text); ``None`` once closed."""
    def close(self) -> None:
        """Release the subscription, also while a ``next()`` waits."""
