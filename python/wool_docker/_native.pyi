"""Stub for the native core, ``wool_docker._native`` (Rust, PyO3).

Every awaitable here is an asyncio future created by pyo3-async-runtimes, not a
coroutine: await it directly; wrap it with ``asyncio.ensure_future`` (not
``create_task``) to schedule it.
"""

from collections.abc import Awaitable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import TypedDict
from typing import final

__all__ = [
    "DEFAULT_BIND_HOST",
    "DEFAULT_DEREGISTER_DELAY",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_GRACE",
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
    "check_standby",
    "check_worker_config",
    "discovery_owner",
    "env_flag",
    "engine_info",
    "inspect_image",
    "list_workers",
    "open_standby",
    "owner_token",
    "prune",
    "pull_image",
    "push_image",
    "read_port",
    "read_server_env",
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
DEFAULT_BIND_HOST: str
"""Host a worker binds when ``WOOL_BIND_HOST`` is unset."""
DEFAULT_SHUTDOWN_GRACE: float
"""Seconds of shutdown grace when ``WOOL_SHUTDOWN_GRACE`` is unset."""
DEFAULT_DEREGISTER_DELAY: float
"""Seconds from SIGTERM to the drain when ``WOOL_DEREGISTER_DELAY`` is unset."""
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

def pull_image(image: str, host: str | None = None) -> Awaitable[None]:
    """Pull an image from its registry with the docker CLI's credentials."""

def push_image(image: str, host: str | None = None) -> Awaitable[None]:
    """Push a local image to its registry with the docker CLI's credentials."""

class Tls(TypedDict):
    """TLS material, PEM text."""

    ca: str
    cert: str
    key: str
    mutual: bool

class Publication(TypedDict):
    """What the worker's labels publish."""

    uid: str
    port: int | str
    tags: Sequence[str]
    extra: Mapping[str, str]
    secure: bool
    identity: str | None
    options: Mapping[str, Any] | None
    network: str | None
    publish: bool | None

class Sandbox(TypedDict):
    """The confinement keywords of ``DockerWorker``, as the user gave them."""

    user: str | None
    read_only: bool
    tmpfs: Mapping[str, str] | None
    cap_add: Sequence[str]
    security_opt: Sequence[str]
    pids_limit: int | None
    oom_score_adj: int | None
    ulimits: Mapping[str, int | tuple[int, int]] | None
    log_config: Mapping[str, Any] | None
    runtime: str | None

class SwarmPlacement(TypedDict):
    """A ``SwarmWorker``'s placement keywords."""

    constraints: Sequence[str]
    reserve_cpus: float | None
    reserve_memory: int | str | None
    lifeline_host: str | None

class WorkerConfig(TypedDict):
    """A worker's configuration: ``DockerWorker``'s keywords as the user gave
    them, in the native core's one schema (``worker::WorkerConfig``). Each
    value is checked by its own type there; an unknown, missing or bad key is
    a ``ValueError`` naming the keyword."""

    image: str
    pull: str
    name: str
    network: str | None
    publication: Publication
    selector: Mapping[str, str]
    labels: Mapping[str, str]
    environment: Mapping[str, str]
    volumes: Sequence[str] | Mapping[str, Mapping[str, str]] | None
    cpus: float | None
    mem_limit: int | str | None
    gpus: int | str | None
    python: str
    wool_version: str
    tls: Tls | None
    start_timeout: float
    shutdown_grace_period: float
    engine_access: str
    server_options: Mapping[str, Any]
    proxy_pool_ttl: float
    backpressure: bytes | None
    sandbox: Sandbox
    swarm: SwarmPlacement | None

def start_worker(
    config: WorkerConfig,
    timeout: float | None = None,
    log_output: bool = True,
    host: str | None = None,
    standby: StandbyHandle | None = None,
) -> Awaitable[WorkerHandle]:
    """Start a worker container from its config and wait until it serves; with
    ``log_output`` its output goes to the ``wool_docker.worker`` logger;
    ``timeout`` ``None`` waits the config's ``start_timeout``. With
    ``standby``, a parked container of it is claimed when one is free (or about
    to be). A bad config raises ``ValueError`` here, before any Engine I/O."""

class StandbyKeywords(TypedDict):
    """A ``Standby``'s own keywords, as the user gave them."""

    size: int
    refill: str
    park_timeout: float

def check_standby(keywords: StandbyKeywords) -> None:
    """Check a standby's own keywords; ``ValueError`` naming the keyword."""

def open_standby(
    config: WorkerConfig,
    keywords: StandbyKeywords,
    name_prefix: str,
    log_output: bool = True,
    host: str | None = None,
) -> Awaitable[StandbyHandle]:
    """Check the image and network of ``config`` (a worker config whose
    per-worker values are unused) and park ``keywords["size"]`` containers of
    its shape in the background."""

def check_worker_config(config: WorkerConfig) -> dict[str, Any]:
    """Check a config exactly as ``start_worker`` reads it (``ValueError``
    naming the keyword if it does not match) and return it in its canonical
    form: sizes in bytes, CPUs as a number, binds as ``src:dst:mode``, limits
    as ``(soft, hard)``, TLS without its PEM text."""

def check_port(port: int | str) -> int:
    """The port rule, 1-65535, for a number or its text; ``ValueError`` if not."""

def check_extra(extra: Mapping[Any, Any] | str) -> dict[str, str]:
    """The ``extra`` rule, strings to strings, for a mapping or its JSON object
    text; ``ValueError`` if not."""

def read_server_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read a worker container's ``WOOL_*`` variables (the entry point's one
    reader): ``host``, ``port``, ``uid`` (text or ``None``), ``tags``,
    ``extra``, ``options``, ``identity``, ``tls`` (CA, certificate and key
    paths, or ``None``), ``tls_mutual``, ``shutdown_grace``,
    ``stdin_control``, ``deregister_delay``, ``server_options``,
    ``proxy_pool_ttl``, ``backpressure`` (bytes). ``ValueError("VARIABLE:
    problem")`` for the first bad variable."""

def read_port(environ: Mapping[str, str]) -> int:
    """The port a worker container serves on: its owner's document's
    (``WOOL_DOCKER_WORKER``), else ``WOOL_PORT``'s, else the default;
    ``ValueError("VARIABLE: problem")``."""

def env_flag(environ: Mapping[str, str], variable: str, default: bool) -> bool:
    """A boolean variable (``1/true/yes/on``, ``0/false/no/off``);
    ``ValueError("VARIABLE: problem")`` otherwise, ``default`` when unset."""

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
