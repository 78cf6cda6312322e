"""wool-docker: wool workers that are Docker containers, found through the Engine.

`DockerWorker` runs a wool worker in a container; `DockerDiscovery` finds worker
containers by label from the Docker Engine's event stream. Both compose with
`wool.WorkerPool` like wool's own `LocalWorker` and `LanDiscovery`.
"""

from __future__ import annotations

try:
    from wool_docker import _native
except ImportError as e:  # pragma: no cover - exercised only by a broken install
    raise ImportError(
        f"wool-docker's native module could not be loaded ({e}). It is built for "
        "CPython >= 3.11 on Linux; reinstall the wheel with "
        "`pip install --force-reinstall wool-docker`, or build it from a checkout "
        "with `pip install .` (needs a Rust toolchain)."
    ) from e

from wool_docker.exceptions import ContainerFailedError
from wool_docker.exceptions import EngineError
from wool_docker.exceptions import EngineUnavailableError
from wool_docker.exceptions import ImageBuildError
from wool_docker.exceptions import ImageMismatchError
from wool_docker.exceptions import ImageNotFoundError
from wool_docker.exceptions import MalformedLabelsWarning
from wool_docker.exceptions import NetworkNotFoundError
from wool_docker.exceptions import NotPublishedError
from wool_docker.exceptions import WoolDockerError
from wool_docker.exceptions import WoolDockerWarning
from wool_docker.exceptions import WorkerStartTimeout
from wool_docker.worker import DockerWorker

__version__: str = _native.__version__

__all__ = [
    "ContainerFailedError",
    "DockerWorker",
    "EngineError",
    "EngineUnavailableError",
    "ImageBuildError",
    "ImageMismatchError",
    "ImageNotFoundError",
    "MalformedLabelsWarning",
    "NetworkNotFoundError",
    "NotPublishedError",
    "WoolDockerError",
    "WoolDockerWarning",
    "WorkerStartTimeout",
    "__version__",
]
