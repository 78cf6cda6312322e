"""`SwarmWorker` on a real two-node Swarm.

The machine's Engine is the manager, a second Engine in a network namespace
the other node (`multinode`). The pool runs where a pool that spreads its own
workers over a Swarm runs: in a container on the overlay on the manager, with
the manager's Engine (``examples/client.py``, or a script of the test's own).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio

from .conftest import NAME_PREFIX
from .conftest import RUN_ID
from .conftest import RUN_LABEL
from .modes_harness import ROOT
from .modes_harness import ClientContainer
from .multinode import Swarm
from .multinode import wait_for

pytestmark = pytest.mark.integration

_START = 120.0
"""Seconds a pool of Swarm workers may take to serve on a loaded machine."""

_GONE = 30.0
"""Seconds within which every task of a dead owner must be gone: its lifeline
ends at once, and its server cancels what runs and exits."""

_KIND = "wool.docker.service"
"""The label on a Swarm worker's service object."""

OWNER_SCRIPT = ROOT / "tests" / "integration" / "swarm_owner_script.py"


def _worker_services(swarm: Swarm) -> dict[str, dict[str, Any]]:
    """The Swarm workers' services by name, with their tasks."""
    found = {}
    for service in swarm.manager.get(
        f"/services?filters={_filters(label=[f'{_KIND}=worker'])}"
    ):
        name = service["Spec"]["Name"]
        found[name] = {
            "id": service["ID"],
            "tasks": swarm.manager.tasks(service=service["ID"]),
        }
    return found


def _filters(**values: list[str]) -> str:
    import urllib.parse

    return urllib.parse.quote(json.dumps(values))


def _task_containers(swarm: Swarm) -> dict[str, str]:
    """Running task containers of Swarm workers on both nodes: id → node."""
    found = {}
    for service in _worker_services(swarm).values():
        for task in service["tasks"]:
            status = task.get("Status", {})
            container = status.get("ContainerStatus", {}).get("ContainerID")
            # `starting` until the image's healthcheck passes, serving already.
            if status.get("State") in ("starting", "running") and container:
                found[container[:12]] = task.get("NodeID", "")
    return found


@pytest_asyncio.fixture
async def client(
    two_nodes: Swarm, image: str
) -> AsyncIterator[Callable[..., Awaitable[ClientContainer]]]:
    """Starts ``examples/client.py`` in containers on the overlay on the manager."""
    clients: list[ClientContainer] = []

    async def start(*arguments: str) -> ClientContainer:
        client = ClientContainer(
            image,
            two_nodes.overlay,
            f"{NAME_PREFIX}-sw-client{len(clients)}",
            {RUN_LABEL: RUN_ID},
            ["--network", two_nodes.overlay, "--image", image, *arguments],
        )
        clients.append(client)
        await client.start()
        return client

    yield start
    for client in clients:
        await client.remove()
    # Whatever a test left: a leak fails it.
    left = _worker_services(two_nodes)
    for name in left:
        two_nodes.remove_service(name)
    assert left == {}, f"the test left Swarm worker services {sorted(left)}"


class TestPool:
    """A pool of Swarm workers spread over both nodes."""

    @pytest.mark.asyncio
    async def test_burst_uses_workers_on_both_nodes(self, two_nodes, client):
        """Test a pool of 4 SwarmWorkers.

        Given:
            A client pool on the manager, in a container on the overlay, with
            ``spawn=4`` `SwarmWorker` s
        When:
            It dispatches rounds of 8 CPU-bound calls (0.3 CPU-s each), then
            leaves its pool
        Then:
            The 4 tasks should run on both nodes, a round should use all 4,
            and after the pool exits no Swarm worker service should be left
        """
        # Arrange
        pool = await client(
            "--spawn",
            "4",
            "--kind",
            "swarm",
            "--quorum",
            "4",
            "--calls",
            "8",
            "--spin",
            "0.3",
            "--interval",
            "0.1",
        )
        every = await pool.log.wait_for(
            lambda r: len(r.hosts) == 4,
            what="a round on all 4 Swarm workers",
            timeout=_START,
        )
        tasks = _task_containers(two_nodes)

        # Act
        await pool.stop(timeout=_START)

        # Assert
        assert set(every.hosts) == set(tasks), (every, tasks)
        assert set(tasks.values()) == {
            two_nodes.manager.node_id,
            two_nodes.worker.node_id,
        }
        assert sum(every.hosts.values()) == 8
        wait_for(
            lambda: _worker_services(two_nodes) == {} or None,
            timeout=_GONE,
            what="no Swarm worker service after the pool exits",
        )
