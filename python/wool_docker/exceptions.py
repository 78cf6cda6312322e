"""Exceptions and warnings raised by wool-docker.

Every error derives from `WoolDockerError`, itself a `wool.WoolError`, so
``except wool.WoolError`` catches ours too. Every warning derives from
`WoolDockerWarning`.
"""

from __future__ import annotations

import errno

from wool import WoolError
from wool import WoolWarning


# public
class WoolDockerError(WoolError):
    """Raised when wool-docker cannot do what was asked of the Docker Engine.

    The root of this package's exceptions; the message says what failed and
    what to do about it.
    """


# public
class EngineUnavailableError(WoolDockerError):
    """Raised when the Docker Engine cannot be reached or refuses us.

    The daemon is not running, ``DOCKER_HOST`` points elsewhere, or this user
    may not open the socket. Transient when the daemon is restarting; retry
    once it is back.

    :param host:
        The Engine address that was tried.
    """

    def __init__(self, message: str, host: str | None = None):
        super().__init__(message)
        self.host = host


# public
class EnginePermissionError(EngineUnavailableError, PermissionError):
    """Raised when this user may not open the Docker Engine's socket.

    Also a `PermissionError` (``errno`` is ``EACCES``), so code that
    handles the operating system's refusals catches it too. The message names
    the socket, the group that owns it and the fix: join that group
    (``sudo usermod -aG GROUP $USER``, then log in again) or use rootless
    Docker. Permanent until the user's groups change.

    :param host:
        The Engine address that was tried.
    :param socket:
        The socket's path.
    :param group:
        The group that owns the socket (its number when it has no name), or
        ``None`` when this user cannot even look at the socket.
    """

    def __init__(
        self,
        message: str,
        host: str | None = None,
        socket: str | None = None,
        group: str | None = None,
    ):
        super().__init__(message, host)
        # errno only: with strerror unset, str() stays the message.
        self.errno = errno.EACCES
        self.socket = socket
        self.group = group


# public
class ImageNotFoundError(WoolDockerError):
    """Raised when an image is neither on the daemon nor in its registry.

    With ``pull="never"`` the daemon alone is asked (``registry`` is
    ``None``); otherwise the registry has no such repository or tag. Build
    the image with ``wool-docker image build --tag TAG`` (``--push`` puts it
    in its registry). Permanent until the image exists.

    :param image:
        The image reference that was looked up.
    :param registry:
        The registry that was asked, or ``None``.
    """

    def __init__(
        self, message: str, image: str | None = None, registry: str | None = None
    ):
        super().__init__(message)
        self.image = image
        self.registry = registry


# public
class ImagePullError(WoolDockerError):
    """Raised when an image cannot be pulled from, or pushed to, its registry.

    The message carries the Engine's own words. Subclasses name the two
    causes users act on: `RegistryAuthError` and `RegistryUnreachableError`.

    :param image:
        The image reference, or ``None`` when no image was involved yet.
    :param registry:
        The registry host (``docker.io`` for Docker Hub).
    """

    def __init__(
        self, message: str, image: str | None = None, registry: str | None = None
    ):
        super().__init__(message)
        self.image = image
        self.registry = registry


# public
class RegistryAuthError(ImagePullError):
    """Raised when a registry refuses the credentials, or finds none.

    Credentials are read as the docker CLI reads them (``$DOCKER_CONFIG`` or
    ``~/.docker``, its ``config.json``'s ``auths``, ``credHelpers`` and
    ``credsStore``); ``docker login REGISTRY`` writes them. Also raised when
    the configured credentials cannot be read (a failing helper).
    """


# public
class RegistryUnreachableError(ImagePullError):
    """Raised when the Docker Engine cannot reach or trust a registry.

    The registry is down or at another address, or the Engine does not trust
    its certificate (``/etc/docker/certs.d/HOST:PORT/ca.crt`` on the Engine's
    host). Transient when the registry is restarting.
    """


# public
class ImageMismatchError(WoolDockerError):
    """Raised when a worker image cannot serve this Python process.

    The image's Python minor version differs from the caller's (cloudpickle
    ships functions by value, so both sides must match) or its wool major
    version cannot talk to ours. Rebuild the image from this environment.

    :param image:
        The offending image.
    """

    def __init__(self, message: str, image: str | None = None):
        super().__init__(message)
        self.image = image


# public
class ImageBuildError(WoolDockerError):
    """Raised when building a worker image fails.

    :param tag:
        The tag that was being built.
    :param log:
        The last lines of the build output.
    """

    def __init__(self, message: str, tag: str | None = None, log: str = ""):
        super().__init__(message)
        self.tag = tag
        self.log = log


# public
class NetworkNotFoundError(WoolDockerError):
    """Raised when a Docker network does not exist.

    Create it first, e.g. ``docker network create wool`` (or an attachable
    overlay on Swarm: ``docker network create -d overlay --attachable wool``).

    :param network:
        The network name or id that was looked up.
    """

    def __init__(self, message: str, network: str | None = None):
        super().__init__(message)
        self.network = network


# public
class ContainerFailedError(WoolDockerError):
    """Raised when a worker container exits or cannot be started.

    Carries the container's exit code and the last lines of its output,
    which usually name the cause. Nothing is left behind: the container has
    been removed by the time this is raised.

    :param container:
        The container's name or id.
    :param exit_code:
        Its exit code, or ``None`` if it never ran.
    :param logs:
        The last lines of its output.
    """

    def __init__(
        self,
        message: str,
        container: str | None = None,
        exit_code: int | None = None,
        logs: str = "",
    ):
        super().__init__(message)
        self.container = container
        self.exit_code = exit_code
        self.logs = logs


# public
class WorkerStartTimeout(WoolDockerError, TimeoutError):
    """Raised when a worker container does not serve before its deadline.

    Also a `TimeoutError`, as wool's `Worker.start` documents. The container
    has been removed. Raise ``timeout`` if the image is slow to start.

    :param container:
        The container's name or id.
    :param waited:
        Seconds waited.
    """

    def __init__(
        self, message: str, container: str | None = None, waited: float | None = None
    ):
        super().__init__(message)
        self.container = container
        self.waited = waited


# public
class NotPublishedError(WoolDockerError):
    """Raised when a worker asked to be published carries no container record.

    Docker labels cannot change after a container is created, so a
    container's labels are its publication. Only workers whose container
    carries them (`DockerWorker`, or a hand-labelled container) can be
    published through `DockerDiscovery`.
    """


# public
class EngineError(WoolDockerError):
    """Raised when the Docker Engine answers a request with an error.

    The message names the operation and the daemon's own words.
    """


# public
class WorkerFeedError(WoolDockerError):
    """Raised inside a worker container when its owner's worker feed fails.

    Routines in a `DockerWorker` container discover workers through the feed
    its owning process serves (``engine_access="feed"``). The feed serves only
    the scopes the owner subscribes to, so a nested routine sees the pool's
    own `DockerDiscovery`; any other scope is refused. The message names the
    feed and the reason.

    :param path:
        The feed socket inside the container.
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


# public
class WoolDockerInternalError(WoolDockerError):
    """Raised when wool-docker itself fails, not the caller or the Engine.

    A task of the native core that panicked, state it cannot encode, or a
    private directory it cannot make. The message says what; please report
    it. Whatever the failed operation had begun has been undone.
    """


# public
class WoolDockerWarning(WoolWarning):
    """Emitted when wool-docker works around something the user should fix."""


# public
class MalformedLabelsWarning(WoolDockerWarning):
    """Emitted when a matching container's labels cannot be parsed.

    The container is skipped until it is replaced; discovery goes on. Fix the
    named label (see the label schema in the README).
    """
