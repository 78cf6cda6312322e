"""wool-docker: wool workers that are Docker containers, found through the Engine.

`DockerWorker` runs a wool worker in a container; `DockerDiscovery` finds worker
containers by label from the Docker Engine's event stream. Both compose with
`wool.WorkerPool` like wool's own `LocalWorker` and `LanDiscovery`.

Public names load on first use: the worker image's entry point and health check
import this package and must not pay for (or be configured by) importing wool and
grpc before they choose to.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

try:
    from wool_docker import _native
except ImportError as e:  # pragma: no cover - exercised only by a broken install
    raise ImportError(
        f"wool-docker's native module could not be loaded ({e}). It is built for "
        "CPython >= 3.11 on Linux; reinstall the wheel with "
        "`pip install --force-reinstall wool-docker`, or build it from a checkout "
        "with `pip install .` (needs a Rust toolchain)."
    ) from e

if TYPE_CHECKING:
    from wool_docker.discovery import DockerDiscovery
    from wool_docker.exceptions import ContainerFailedError
    from wool_docker.exceptions import EngineError
    from wool_docker.exceptions import EnginePermissionError
    from wool_docker.exceptions import EngineUnavailableError
    from wool_docker.exceptions import ImageBuildError
    from wool_docker.exceptions import ImageMismatchError
    from wool_docker.exceptions import ImageNotFoundError
    from wool_docker.exceptions import ImagePullError
    from wool_docker.exceptions import MalformedLabelsWarning
    from wool_docker.exceptions import NetworkNotFoundError
    from wool_docker.exceptions import NotPublishedError
    from wool_docker.exceptions import RegistryAuthError
    from wool_docker.exceptions import RegistryUnreachableError
    from wool_docker.exceptions import WoolDockerError
    from wool_docker.exceptions import WoolDockerInternalError
    from wool_docker.exceptions import WoolDockerWarning
    from wool_docker.exceptions import WorkerFeedError
    from wool_docker.exceptions import WorkerStartTimeout
    from wool_docker.image import build_image
    from wool_docker.standby import Standby
    from wool_docker.swarm import SwarmWorker
    from wool_docker.worker import DockerWorker

__version__: str = _native.__version__

_LAZY: dict[str, str] = {
    "DockerDiscovery": "wool_docker.discovery",
    "DockerWorker": "wool_docker.worker",
    "Standby": "wool_docker.standby",
    "SwarmWorker": "wool_docker.swarm",
    "build_image": "wool_docker.image",
    "ContainerFailedError": "wool_docker.exceptions",
    "EngineError": "wool_docker.exceptions",
    "EnginePermissionError": "wool_docker.exceptions",
    "EngineUnavailableError": "wool_docker.exceptions",
    "ImageBuildError": "wool_docker.exceptions",
    "ImageMismatchError": "wool_docker.exceptions",
    "ImageNotFoundError": "wool_docker.exceptions",
    "ImagePullError": "wool_docker.exceptions",
    "MalformedLabelsWarning": "wool_docker.exceptions",
    "NetworkNotFoundError": "wool_docker.exceptions",
    "NotPublishedError": "wool_docker.exceptions",
    "RegistryAuthError": "wool_docker.exceptions",
    "RegistryUnreachableError": "wool_docker.exceptions",
    "WoolDockerError": "wool_docker.exceptions",
    "WoolDockerInternalError": "wool_docker.exceptions",
    "WoolDockerWarning": "wool_docker.exceptions",
    "WorkerFeedError": "wool_docker.exceptions",
    "WorkerStartTimeout": "wool_docker.exceptions",
}

__all__ = [
    "ContainerFailedError",
    "DockerDiscovery",
    "DockerWorker",
    "EngineError",
    "EnginePermissionError",
    "EngineUnavailableError",
    "ImageBuildError",
    "ImageMismatchError",
    "ImageNotFoundError",
    "ImagePullError",
    "MalformedLabelsWarning",
    "NetworkNotFoundError",
    "NotPublishedError",
    "RegistryAuthError",
    "RegistryUnreachableError",
    "Standby",
    "SwarmWorker",
    "WoolDockerError",
    "WoolDockerInternalError",
    "WoolDockerWarning",
    "WorkerFeedError",
    "WorkerStartTimeout",
    "__version__",
    "build_image",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wool_docker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
