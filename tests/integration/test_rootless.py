"""A pool on rootless Docker: an Engine run by an unprivileged user, whose
bridges are in rootlesskit's network namespace.

This process cannot route to those containers' addresses (the rootless
Engine's default bridge has this machine's own subnet); rootlesskit forwards
the ports it publishes to this machine's loopback. `rootless.rootless_engine`
brings it up (about 1 s here) and takes every trace of it down.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker

from . import nested
from . import routines
from .rootless import RootlessEngine
from .rootless import rootless_engine

pytestmark = pytest.mark.integration

TIMEOUT = 120.0
"""Seconds any single wait of these tests may take."""


@pytest.fixture(scope="module")
def rootless(image: str) -> Iterator[RootlessEngine]:
    """A rootless Docker Engine of a throwaway user, with the image loaded."""
    with rootless_engine(image) as engine:
        yield engine


@pytest.fixture
def rootless_env(
    rootless: RootlessEngine, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a user of that Engine: its ``DOCKER_HOST``."""
    env = {"DOCKER_HOST": rootless.host}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _ps(*args: str, env: dict[str, str]) -> dict[str, str]:
    """``wool-docker ps`` in a fresh interpreter: container name → address."""
    result = subprocess.run(
        [sys.executable, "-m", "wool_docker.cli", "ps", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    return {row[4]: row[1] for row in rows}


class TestRootlessDocker:
    @pytest.mark.asyncio
    async def test_a_pool_serves_a_burst_on_every_worker(
        self, case, rootless, rootless_env
    ):
        """Test a pool with default keywords on a rootless Engine.

        Given:
            A pool of 2 `DockerWorker`s on a rootless Engine (``DOCKER_HOST``
            its socket) with default keywords on its default network, and
            wool's default quorum
        When:
            4 CPU-bound routines are gathered at pool entry, another process
            lists the workers with ``wool-docker ps``, and a recursive fib
            runs (routines awaiting routines from inside the containers)
        Then:
            Every worker should run a routine; each should publish its port
            on loopback only and be advertised at ``127.0.0.1`` and that
            port, here and in the other process; fib should be right (the
            worker feed goes through its relay: the Engine runs in a mount
            namespace of its own, as another user); nothing is left after
        """
        # Arrange
        options = case.options(network=None)
        pool = wool.WorkerPool(
            spawn=2,
            worker=lambda *tags, **kw: DockerWorker(
                *tags, **options, log_output=False, **kw
            ),
            discovery=DockerDiscovery(labels=case.labels),
        )
        asked: dict[str, str] = {}
        bound: dict[str, str] = {}

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(4)))
                seen = _ps("--label", case.label, env=rootless_env)
                result = await nested.fib(7)
                for name in rootless.out(
                    "ps", "-q", "--filter", f"label={case.label}"
                ).split():
                    ports = json.loads(
                        rootless.out(
                            "inspect", "-f", "{{json .NetworkSettings.Ports}}", name
                        )
                    )
                    binding = ports["50051/tcp"][0]
                    asked[name] = binding["HostIp"]
                    bound[name] = binding["HostPort"]
            left = rootless.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 2
        assert result == 13
        assert set(asked.values()) == {"127.0.0.1"}
        assert sorted(seen.values()) == sorted(f"127.0.0.1:{p}" for p in bound.values())
        assert left == ""
