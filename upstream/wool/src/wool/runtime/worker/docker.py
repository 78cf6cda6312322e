"""Docker workers: ``DockerWorker`` from the wool-docker package.

Install with ``pip install 'wool[docker]'``. This module always imports, so
wool's own test collection and documentation tools can walk it; importing
``DockerWorker`` without wool-docker installed raises an `ImportError` that
says how to install it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DockerWorker"]

try:
    from wool_docker.worker import DockerWorker
except ModuleNotFoundError as _error:
    if _error.name not in ("wool_docker", "wool_docker.worker"):
        raise
    _missing: ModuleNotFoundError | None = _error
else:
    _missing = None


def __getattr__(name: str) -> Any:
    """Raise the install hint for ``DockerWorker`` when wool-docker is absent."""
    if name in __all__ and _missing is not None:
        raise ImportError(
            f"wool.runtime.worker.docker.{name} needs the wool-docker package; "
            "install it with: pip install 'wool[docker]'",
            name=__name__,
        ) from _missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
