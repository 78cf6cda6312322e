"""`DockerWorker` under wool's own namespace (wool issue 104); see `wool_docker`."""

from __future__ import annotations

from wool_docker.worker import DockerWorker

__all__ = ["DockerWorker"]
