"""Where an owner reaches its workers: the container's address or a published port.

On this machine's own Engine the owner routes to container addresses. A second
Engine in a network namespace of its own (`multinode.second_engine`, reached
over ``tcp://``) is what Docker Desktop, rootless Docker and a remote host look
like to an owner: its bridge's subnet is the machine's own, so a container
address there leads to the wrong bridge, and only ports it publishes reach its
workers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import Standby

from . import routines
from .multinode import Node
from .multinode import second_engine

pytestmark = pytest.mark.integration

TIMEOUT = 120.0
"""Seconds any single wait of these tests may take."""


def _ps(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """``wool-docker ps`` in a fresh interpreter: container name → address."""
    env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "wool_docker.cli", "ps", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    return {row[4]: row[1] for row in rows}


def _bindings(docker: Any, container: str, *, asked: bool = False) -> Any:
    """The ports a container publishes, as the Engine bound them (``asked``:
    as its create asked)."""
    what = ".HostConfig.PortBindings" if asked else ".NetworkSettings.Ports"
    text = docker.run("inspect", "-f", f"{{{{json {what}}}}}", container)
    return json.loads(text.stdout) or {}


class TestOnThisMachine:
    @pytest.mark.asyncio
    async def test_default_is_the_container_address(self, case, docker):
        """Test how a worker on this machine's Engine is reached by default.

        Given:
            A `DockerWorker` with default keywords on a network of this
            machine's Engine, which this process routes to
        When:
            It is started
        Then:
            It should advertise its address on that network and publish no
            port
        """
        # Arrange
        worker = case.worker()
        subnet = docker.run(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", case.network
        ).stdout.strip()

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
            try:
                address = worker.address
                bindings = _bindings(docker, worker.container, asked=True)
            finally:
                await worker.stop()

        # Assert
        assert address is not None
        host, _, port = address.rpartition(":")
        assert ipaddress.ip_address(host) in ipaddress.ip_network(subnet)
        assert port == "50051"
        assert bindings == {}

    @pytest.mark.asyncio
    async def test_published_pool_serves_a_burst_on_every_worker(self, case, docker):
        """Test a pool whose workers are reached at published ports.

        Given:
            A pool of 4 `DockerWorker`s with ``publish=True`` and wool's
            default quorum
        When:
            8 CPU-bound routines are gathered at pool entry, and another
            process lists the workers with ``wool-docker ps``
        Then:
            Every worker should run a routine; each container should publish
            its port on loopback only; and the other process should see each
            worker at ``127.0.0.1`` and its published port, as this one does
        """
        # Arrange
        pool = case.pool("docker", 4, publish=True)

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(8)))
                addresses = {w.container: w.address for w in case.workers}
                bindings = {c: _bindings(docker, c) for c in addresses}
                seen = _ps("--label", case.label)

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 4
        for container, address in addresses.items():
            (binding,) = bindings[container]["50051/tcp"]
            assert binding["HostIp"] == "127.0.0.1"
            assert address == f"127.0.0.1:{binding['HostPort']}"
            assert seen[container] == address
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_a_standby_parks_published_workers(self, case):
        """Test claims from a standby of published workers.

        Given:
            A `Standby` of 2 parked containers with ``publish=True``
        When:
            A pool of 2 claims them and gathers 4 routines
        Then:
            Both should serve at loopback addresses, and the routines run on
            both
        """
        # Arrange
        standby = Standby(
            case.image,
            case.network,
            size=2,
            labels=case.labels,
            name_prefix=case.name_prefix,
            log_output=False,
            publish=True,
        )

        # Act
        async with asyncio.timeout(TIMEOUT), standby:
            await standby.filled()
            pool = wool.WorkerPool(
                spawn=2,
                worker=standby.worker,
                discovery=DockerDiscovery(network=case.network, labels=case.labels),
            )
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(4)))
                published = _ps("--label", case.label)

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 2
        assert len(published) == 2
        assert all(a.startswith("127.0.0.1:") for a in published.values())

    def test_a_hand_run_container_labelled_publish(self, case, docker, image):
        """Test the ``wool.publish`` label on a container run by hand.

        Given:
            ``docker run -p 127.0.0.1::50051 --label wool.publish=true``
        When:
            ``wool-docker ps`` lists it
        Then:
            It should show the container at ``127.0.0.1`` and the port the
            Engine picked
        """
        # Arrange
        container = docker.run(
            "run", "-d", "--rm", "--label", case.label, "--label", "wool.publish=true",
            "--network", case.network, "-p", "127.0.0.1::50051", image,
        ).stdout.strip()  # fmt: skip
        port = docker.run("port", container, "50051/tcp").stdout.split(":")[-1]
        name = docker.run("inspect", "-f", "{{.Name}}", container).stdout
        try:
            # Act
            seen = _ps("--label", case.label)
        finally:
            docker.remove_containers(container)

        # Assert
        assert seen[name.strip().lstrip("/")] == f"127.0.0.1:{port.strip()}"


@pytest.fixture(scope="module")
def remote(image: str) -> Iterator[Node]:
    """A second Engine this process cannot route to, reached over ``tcp://``
    with mutual TLS."""
    with second_engine(image, tcp=True) as node:
        yield node


@pytest.fixture
def remote_env(remote: Node, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a user of that Engine has: ``DOCKER_HOST`` and its TLS."""
    assert remote.engine.tcp is not None
    env = {
        "DOCKER_HOST": remote.engine.tcp,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(remote.engine.tls),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class TestAnEngineTheOwnerCannotRouteTo:
    @pytest.mark.asyncio
    async def test_a_pool_serves_a_burst_on_every_worker(self, case, remote, remote_env):
        """Test a pool on an Engine whose containers this process cannot route to.

        Given:
            A pool of 3 `DockerWorker`s on the second Engine (``DOCKER_HOST``
            its ``tcp://`` address with TLS; its default bridge, whose subnet
            is this machine's own) with default keywords but
            ``engine_access="none"`` (the feed is bind-mounted from this
            machine), and wool's default quorum
        When:
            6 CPU-bound routines are gathered at pool entry, and another
            process lists the workers with ``wool-docker ps``
        Then:
            Every worker should run a routine, each advertised at the second
            Engine's address and a port it published on every address; the
            other process should see the same; and nothing is left after
        """
        # Arrange
        options = case.options(network=None, engine_access="none")
        pool = wool.WorkerPool(
            spawn=3,
            worker=lambda *tags, **kw: DockerWorker(
                *tags, **options, log_output=False, **kw
            ),
            discovery=DockerDiscovery(labels=case.labels),
        )
        workers: dict[str, str | None] = {}

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(6)))
                seen = _ps("--label", case.label, env=remote_env)
                for name in remote.engine.out(
                    "ps", "-q", "--filter", f"label={case.label}"
                ).split():
                    asked = remote.engine.out(
                        "inspect", "-f", "{{json .HostConfig.PortBindings}}", name
                    )
                    workers[name] = json.loads(asked)["50051/tcp"][0]["HostIp"]
            left = remote.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 3
        assert len(workers) == 3
        assert set(workers.values()) == {""}
        assert len(seen) == 3
        assert all(a.startswith(f"{remote.inner}:") for a in seen.values())
        assert left == ""
