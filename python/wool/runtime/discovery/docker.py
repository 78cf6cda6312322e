"""`DockerDiscovery` under wool's own namespace (wool issue 104); see `wool_docker`."""

from __future__ import annotations

__all__: list[str] = []
