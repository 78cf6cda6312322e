"""`DockerDiscovery` under wool's own namespace (wool issue 104); see `wool_docker`."""

from __future__ import annotations

from wool_docker.discovery import DockerDiscovery

__all__ = ["DockerDiscovery"]
