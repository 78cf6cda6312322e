"""The two-node Swarm of `multinode` itself: nodes, a service across them, the
manager's view of every task, and the second Engine stopped and started.

These are the ground the multi-node discovery tests stand on: if one fails,
the swarm the others would run on is not what they assume.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import time
from typing import Any

import pytest

from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL

from .multinode import Swarm
from .multinode import wait_for

pytestmark = pytest.mark.integration

SERVICE_LABEL = "com.docker.swarm.service.name"
"""The label Swarm puts on every task container of a service."""

_TIMEOUT = 60.0
"""Seconds a service's tasks may take to run, or its containers to go."""

_DOWN_TIMEOUT = 60.0
"""Seconds the manager may take to mark a stopped node ``down`` (measured
here: 12.7-15.1 s after SIGTERM, the Engine exiting after about 3 s)."""


def _running_tasks(swarm: Swarm, service: str, replicas: int) -> list[dict[str, Any]]:
    """Wait until the manager lists ``replicas`` running tasks of ``service``."""

    def running() -> list[dict[str, Any]] | None:
        tasks = swarm.manager.tasks(service=service, desired_state="running")
        states = [task["Status"]["State"] for task in tasks]
        return tasks if states == ["running"] * replicas else None

    return wait_for(
        running, timeout=_TIMEOUT, what=f"{replicas} running tasks of {service}"
    )


def _containers(engine: Any, service: str) -> set[str]:
    """Full ids of the running containers of ``service`` on one Engine."""
    listing = engine.out(
        "ps", "-q", "--no-trunc", "--filter", f"label={SERVICE_LABEL}={service}"
    )
    return set(listing.split())


def test_two_nodes_are_ready(two_nodes: Swarm) -> None:
    """The manager lists both nodes, ready and active; the worker is no manager."""
    listing = two_nodes.manager.out("node", "ls", "--format", "{{json .}}")
    nodes = {row["ID"]: row for row in map(json.loads, listing.splitlines())}

    assert set(nodes) == {two_nodes.manager.node_id, two_nodes.worker.node_id}
    assert all(row["Status"] == "Ready" for row in nodes.values()), nodes
    assert all(row["Availability"] == "Active" for row in nodes.values()), nodes
    assert nodes[two_nodes.manager.node_id]["ManagerStatus"] == "Leader"
    assert nodes[two_nodes.worker.node_id]["ManagerStatus"] == ""
    assert two_nodes.worker.swarm_state() == "active"


def test_service_spreads_and_the_manager_lists_every_task(two_nodes: Swarm) -> None:
    """Four replicas run two per node; the manager's ``GET /tasks`` shows all
    four with node, state, container and overlay address, while each Engine
    runs only its own node's; removing the service empties both."""
    service = two_nodes.create_service(4, "--replicas-max-per-node", "3")
    tasks = _running_tasks(two_nodes, service, 4)

    by_node = collections.Counter(task["NodeID"] for task in tasks)
    assert by_node == {two_nodes.manager.node_id: 2, two_nodes.worker.node_id: 2}
    addresses = set()
    for task in tasks:
        assert task["DesiredState"] == "running"
        assert task["Spec"]["ContainerSpec"]["Labels"] == {
            "wool.worker": "true",
            RUN_LABEL: RUN_ID,
        }
        (attachment,) = [
            a
            for a in task["NetworksAttachments"]
            if a["Network"]["Spec"]["Name"] == two_nodes.overlay
        ]
        (address,) = attachment["Addresses"]
        addresses.add(ipaddress.ip_interface(address).ip)
    assert len(addresses) == 4
    for engine in (two_nodes.manager, two_nodes.worker):
        assert _containers(engine, service) == {
            task["Status"]["ContainerStatus"]["ContainerID"]
            for task in tasks
            if task["NodeID"] == engine.node_id
        }
    container = min(_containers(two_nodes.worker, service))
    (inspected,) = json.loads(two_nodes.worker.out("container", "inspect", container))
    assert inspected["Config"]["Labels"]["wool.worker"] == "true"
    assert inspected["Config"]["Labels"]["com.docker.swarm.node.id"] == (
        two_nodes.worker.node_id
    )

    two_nodes.remove_service(service)
    assert _containers(two_nodes.manager, service) == set()
    assert _containers(two_nodes.worker, service) == set()
    # A task filter naming a service that is gone is an error, not an empty list.
    status, body = two_nodes.manager.request(
        "GET", f'/tasks?filters={{"service":["{service}"]}}'
    )
    assert (status, b"not found" in body) == (404, True), body


def test_second_engine_stops_and_starts(two_nodes: Swarm) -> None:
    """Stopped, the second node goes ``down`` in the manager's view within a
    bound; started again with the same flags, it rejoins and is ``ready``."""
    worker = two_nodes.worker.node_id

    def state() -> str:
        return two_nodes.nodes()[worker]["Status"]["State"]

    stopped = time.monotonic()
    two_nodes.worker.stop()
    wait_for(
        lambda: True if state() == "down" else None,
        timeout=_DOWN_TIMEOUT,
        what="the manager to mark the stopped node down",
        interval=0.25,
    )
    down = time.monotonic() - stopped

    two_nodes.worker.start()
    ready = two_nodes.wait_ready()

    print(f"node down {down:.1f} s after its Engine stopped; ready {ready:.1f} s after")
    assert two_nodes.worker.swarm_state() == "active"
    assert two_nodes.worker.out("info", "--format", "{{.Swarm.NodeID}}") == worker
