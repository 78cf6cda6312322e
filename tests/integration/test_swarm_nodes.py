"""Discovery across the nodes of a real two-node Swarm.

The machine's Engine is the manager, a second Engine in a network namespace the
other node (`multinode`). The pool runs as ``examples/client.py`` in a container
on the overlay on the manager, with the manager's Engine: the way a pool that
uses a multi-node Swarm is run. Hosts in a round are task containers' hostnames
(the first 12 hex digits of their ids), as the manager's ``GET /tasks`` names
them, wherever they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from wool_docker import DockerDiscovery
from wool_docker.pytest import NAME_PREFIX
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL

from .modes_harness import ROOT
from .modes_harness import ClientContainer
from .modes_harness import xfail_on_known_wool_failure
from .multinode import Swarm
from .multinode import wait_for
from .tls_relay import make_certificates
from .tls_relay import tls_relay

pytestmark = pytest.mark.integration

SERVICE_LABEL = "com.docker.swarm.service.name"
"""The label Swarm puts on every task container of a service."""

_START = 120.0
"""Seconds a task may take to serve: tasks on the second Engine spend 15-22 s
preparing on its vfs storage, and turn ``running`` after the image's 10 s
healthcheck."""

_DROP = 5.0
"""Seconds after which a departed task gets no more work: the manager shows a
killed remote task failed in 0.2-0.4 s, and discovery polls every second and
drops a task whose port refuses two probes in a row."""

_TIMEOUT = 60.0
"""Seconds a change already under way may take to show in the rounds."""

WATCHER = ROOT / "tests" / "integration" / "watch_script.py"


def _tasks(swarm: Swarm, service: str) -> dict[str, dict[str, str]]:
    """The service's running tasks by hostname: their node and container id."""
    tasks = swarm.manager.tasks(service=service, desired_state="running")
    found = {}
    for task in tasks:
        container = task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
        if task.get("Status", {}).get("State") == "running" and container:
            found[container[:12]] = {"node": task["NodeID"], "container": container}
    return found


def _serving(swarm: Swarm, service: str, count: int, **where: Any) -> dict[str, Any]:
    """Wait until ``count`` tasks of ``service`` run (and match ``where``)."""

    def ready() -> dict[str, Any] | None:
        tasks = _tasks(swarm, service)
        if "without" in where:
            tasks = {h: t for h, t in tasks.items() if h not in where["without"]}
        return tasks if len(tasks) == count else None

    return wait_for(ready, timeout=_START, what=f"{count} running tasks of {service}")


def _on(tasks: dict[str, Any], node: str) -> set[str]:
    return {host for host, task in tasks.items() if task["node"] == node}


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
            f"{NAME_PREFIX}-mn-client{len(clients)}",
            {RUN_LABEL: RUN_ID},
            [
                "--network",
                two_nodes.overlay,
                "--calls",
                "12",
                "--concurrency",
                "1",
                "--interval",
                "0.1",
                *arguments,
            ],
        )
        clients.append(client)
        await client.start()
        return client

    yield start
    for client in clients:
        await client.remove()


@pytest.fixture
def service(two_nodes: Swarm) -> Any:
    """Creates services of the worker image on the overlay; removes them after."""
    names: list[str] = []

    def create(replicas: int, *args: str) -> str:
        name = two_nodes.create_service(replicas, *args)
        names.append(name)
        return name

    yield create
    for name in names:
        two_nodes.remove_service(name)


class TestExternalAcrossNodes:
    """A client pool over a service whose tasks run on both nodes."""

    @pytest.mark.asyncio
    async def test_subscriber_with_tasks_on_both_nodes(self, two_nodes, service, client):
        """Test every task used, a remote task killed and the service scaled.

        Given:
            A service of 4 tasks spread 2 + 2 over the two nodes, and a client
            pool on the manager with ``DockerDiscovery(network=<overlay>,
            labels={"com.docker.swarm.service.name": <service>}).subscriber``
        When:
            A task on the other node is killed, then the service is scaled to
            6 and back to 2
        Then:
            A round should reach all 4 tasks; no round started 5 s after the
            kill should reach the killed task, and one should reach the 4 then
            running (the replacement included); after scaling, rounds should
            reach all 6, then only the 2 left
        """
        # Arrange
        name = service(4, "--replicas-max-per-node", "2")
        tasks = _serving(two_nodes, name, 4)
        assert _on(tasks, two_nodes.worker.node_id), tasks
        pool = await client("--label", f"{SERVICE_LABEL}={name}")
        first = await pool.log.wait_for(
            lambda r: r.hosts.keys() == tasks.keys(),
            what="a round on all 4 tasks of both nodes",
            timeout=_START,
        )

        # Act: kill a task of the other node.
        victim = min(_on(tasks, two_nodes.worker.node_id))
        killed_at = time.time()
        two_nodes.worker.run("kill", tasks[victim]["container"])
        killed = time.time()
        replaced = _serving(two_nodes, name, 4, without={victim})
        after_kill = await pool.log.wait_for(
            lambda r: r.hosts.keys() == replaced.keys(),
            what="a round on the 4 tasks running after the kill",
            timeout=_START,
            since=killed_at + _DROP,
        )

        # Act: scale up and down.
        two_nodes.manager.run(
            "service",
            "update",
            "--detach",
            "--replicas-max-per-node",
            "3",
            "--replicas",
            "6",
            name,
        )
        grown = _serving(two_nodes, name, 6)
        scaled = await pool.log.wait_for(
            lambda r: r.hosts.keys() == grown.keys(),
            what="a round on all 6 tasks after scaling up",
            timeout=_START,
        )
        shrinking_at = time.time()
        two_nodes.manager.run("service", "scale", "--detach", f"{name}=2")
        left = _serving(two_nodes, name, 2)
        shrunk = time.time()
        await pool.log.wait_for(
            lambda r: r.number > 0 and set(r.hosts) <= left.keys(),
            what="a round on the 2 tasks left",
            timeout=_TIMEOUT,
            since=shrunk + _DROP,
        )
        await pool.stop(timeout=_TIMEOUT)

        # Assert
        assert first.hosts.keys() == tasks.keys()
        assert after_kill.hosts.keys() == replaced.keys()
        late = [str(r) for r in pool.log.since(killed_at + _DROP) if victim in r.hosts]
        assert late == [], f"the killed task {victim} still got work"
        assert scaled.hosts.keys() == grown.keys()
        gone = grown.keys() - left.keys()
        late = [str(r) for r in pool.log.since(shrunk + _DROP) if gone & r.hosts.keys()]
        assert late == [], f"removed tasks {gone} still got work"
        unexpected, known = pool.log.failures(
            [(killed_at, killed), (shrinking_at, shrunk)]
        )
        assert unexpected == [], pool.log.tail(len(pool.log.rounds))
        xfail_on_known_wool_failure(known)

    @pytest.mark.asyncio
    async def test_subscriber_with_the_other_node_drained(
        self, two_nodes, service, client
    ):
        """Test draining the other node.

        Given:
            A service of 4 tasks spread over both nodes, and a client pool
        When:
            The other node is drained (``docker node update --availability
            drain``), which moves its tasks to the manager
        Then:
            No round started 5 s after the drain should reach the drained
            node's tasks, and a round should reach the 4 tasks then running
        """
        # Arrange
        name = service(4, "--replicas-max-per-node", "2")
        tasks = _serving(two_nodes, name, 4)
        drained = _on(tasks, two_nodes.worker.node_id)
        pool = await client("--label", f"{SERVICE_LABEL}={name}")
        await pool.log.wait_for(
            lambda r: r.hosts.keys() == tasks.keys(),
            what="a round on all 4 tasks",
            timeout=_START,
        )

        # Act
        drained_at = time.time()
        two_nodes.manager.run(
            "node", "update", "--availability", "drain", two_nodes.worker.node_id
        )
        try:
            drained_done = time.time()
            # The service is capped at 2 per node: update the cap so the
            # manager can take all 4.
            two_nodes.manager.run(
                "service", "update", "--detach", "--replicas-max-per-node", "4", name
            )
            moved = _serving(two_nodes, name, 4, without=drained)
            await pool.log.wait_for(
                lambda r: r.hosts.keys() == moved.keys(),
                what="a round on the 4 tasks on the manager",
                timeout=_START,
                since=drained_at + _DROP,
            )
            await pool.stop(timeout=_TIMEOUT)
        finally:
            two_nodes.manager.run(
                "node", "update", "--availability", "active", two_nodes.worker.node_id
            )

        # Assert
        assert _on(moved, two_nodes.worker.node_id) == set()
        late = [
            str(r)
            for r in pool.log.since(drained_at + _DROP)
            if drained & r.hosts.keys()
        ]
        assert late == [], f"tasks of the drained node {drained} still got work"
        unexpected, known = pool.log.failures([(drained_at, drained_done + _DROP)])
        assert unexpected == [], pool.log.tail(len(pool.log.rounds))
        xfail_on_known_wool_failure(known)

    @pytest.mark.asyncio
    async def test_subscriber_with_the_other_nodes_engine_stopped(
        self, two_nodes, service, client
    ):
        """Test the other node's Engine stopping (its node going down).

        Given:
            A service of 4 tasks spread over both nodes, and a client pool
        When:
            The other node's Engine is stopped (its tasks die with it; the
            manager marks the node down only 13-15 s later)
        Then:
            No round started 10 s after the stop should reach that node's
            tasks, and rounds should go on on the manager's
        """
        # Arrange
        name = service(4, "--replicas-max-per-node", "2")
        tasks = _serving(two_nodes, name, 4)
        remote = _on(tasks, two_nodes.worker.node_id)
        local = _on(tasks, two_nodes.manager.node_id)
        pool = await client("--label", f"{SERVICE_LABEL}={name}")
        await pool.log.wait_for(
            lambda r: r.hosts.keys() == tasks.keys(),
            what="a round on all 4 tasks",
            timeout=_START,
        )

        # Act
        stopped_at = time.time()
        two_nodes.worker.stop()
        try:
            stopped = time.time()
            after = await pool.log.wait_for(
                lambda r: r.number > 0 and not r.errors and set(r.hosts) >= local,
                what="a round on the manager's tasks after the stop",
                timeout=_TIMEOUT,
                since=stopped + 10.0,
            )
            await pool.stop(timeout=_TIMEOUT)
        finally:
            two_nodes.worker.start()
            two_nodes.wait_ready()

        # Assert
        assert not remote & after.hosts.keys()
        late = [
            str(r) for r in pool.log.since(stopped + 10.0) if remote & r.hosts.keys()
        ]
        assert late == [], f"tasks of the stopped node {remote} still got work"
        unexpected, known = pool.log.failures([(stopped_at, stopped + 10.0)])
        assert unexpected == [], pool.log.tail(len(pool.log.rounds))
        xfail_on_known_wool_failure(known)


class TestHybridAcrossNodes:
    """A service on both nodes plus the client's own burst workers."""

    @pytest.mark.asyncio
    async def test_worker_pool_with_service_on_both_nodes_and_bursts(
        self, two_nodes, service, client, image
    ):
        """Test the seed's hybrid mode across nodes.

        Given:
            A service of 4 tasks over both nodes labelled ``wool.worker=true``
            (and this run's label), and a client on the manager running
            ``WorkerPool(spawn=2, worker=<DockerWorker on the overlay>,
            discovery=DockerDiscovery(network=<overlay>, labels=<those>))``
        When:
            It dispatches rounds, then leaves its pool
        Then:
            A round should reach all 4 tasks and both burst workers; on exit
            the burst containers should be gone and the 4 tasks still running
        """
        # Arrange
        name = service(4, "--replicas-max-per-node", "2")
        tasks = _serving(two_nodes, name, 4)
        burst = f"wool.docker.pytest.burst={RUN_ID}"
        pool = await client(
            "--label",
            "wool.worker=true",
            "--label",
            f"{RUN_LABEL}={RUN_ID}",
            "--spawn",
            "2",
            "--image",
            image,
            "--worker-label",
            f"{RUN_LABEL}={RUN_ID}",
            "--worker-label",
            burst,
        )

        # Act
        everyone = await pool.log.wait_for(
            lambda r: len(r.hosts) == 6 and tasks.keys() <= r.hosts.keys(),
            what="a round on the 4 tasks and the 2 burst workers",
            timeout=_START,
        )
        bursts = everyone.hosts.keys() - tasks.keys()
        await pool.stop(timeout=_TIMEOUT)

        # Assert
        assert len(bursts) == 2
        left = two_nodes.manager.out("ps", "-aq", "--filter", f"label={burst}").split()
        assert left == []
        assert _tasks(two_nodes, name).keys() == tasks.keys()
        unexpected, _ = pool.log.failures([])
        assert unexpected == [], pool.log.tail(len(pool.log.rounds))


async def _watch(
    two_nodes: Swarm, image: str, service: str, addresses: set[str], *options: str
) -> list[dict[str, str]]:
    """Events of a subscriber in a container on the overlay on the manager.

    ``watch_script.py`` follows ``service`` there, with ``options`` (``docker
    run`` options: the Engine it is given) until it has added ``addresses``,
    and 3 s more: every change of a subscription's first seconds would have
    come by then, a full poll and its probes done twice over.
    """
    watcher = await asyncio.create_subprocess_exec(
        "docker",
        "run",
        "--rm",
        "-i",
        "--name",
        f"{NAME_PREFIX}-mn-watch",
        "--label",
        f"{RUN_LABEL}={RUN_ID}",
        "--network",
        two_nodes.overlay,
        "-v",
        f"{WATCHER}:/watch.py:ro",
        *options,
        "--entrypoint",
        "python3",
        image,
        "/watch.py",
        two_nodes.overlay,
        f"{SERVICE_LABEL}={service}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    events: list[dict[str, str]] = []
    try:
        assert watcher.stdout is not None
        async with asyncio.timeout(_START):
            while {
                e["address"] for e in events if e["type"] == "worker-added"
            } != addresses:
                line = await watcher.stdout.readline()
                if not line:
                    assert watcher.stderr is not None
                    stderr = (await watcher.stderr.read()).decode()[-3000:]
                    raise AssertionError(f"the watcher ended early: {stderr}")
                events.append(json.loads(line))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                while line := await watcher.stdout.readline():
                    events.append(json.loads(line))
    finally:
        if watcher.stdin is not None:
            watcher.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await watcher.wait()
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    return events


def _addresses(two_nodes: Swarm, service: str) -> dict[str, str]:
    """The running tasks' overlay addresses (``IP:50051``) by node id."""
    addresses = {}
    for task in two_nodes.manager.tasks(service=service, desired_state="running"):
        for attachment in task.get("NetworksAttachments", []):
            if attachment["Network"]["Spec"]["Name"] == two_nodes.overlay:
                ip = attachment["Addresses"][0].split("/")[0]
                addresses[f"{ip}:50051"] = task["NodeID"]
    return addresses


class TestIdentityAcrossNodes:
    """Each task is one worker, whichever path sees it."""

    @pytest.mark.asyncio
    async def test_subscriber_announces_each_task_once(self, two_nodes, service, image):
        """Test that local tasks (containers and tasks at once) are not doubled.

        Given:
            A service of 4 tasks over both nodes: the manager's own tasks are
            both containers of its Engine and tasks of its Swarm
        When:
            A subscriber on the manager follows the service
        Then:
            It should add exactly the 4 tasks' addresses, each once, under 4
            distinct uids, and drop none
        """
        # Arrange
        name = service(4, "--replicas-max-per-node", "2")
        tasks = _serving(two_nodes, name, 4)
        addresses = set(_addresses(two_nodes, name))

        # Act
        events = await _watch(
            two_nodes,
            image,
            name,
            addresses,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            # The image runs as an unprivileged user: the socket's group lets it in.
            "--group-add",
            str(os.stat("/var/run/docker.sock").st_gid),
        )

        # Assert
        added = [e for e in events if e["type"] == "worker-added"]
        assert sorted(e["address"] for e in added) == sorted(addresses), events
        assert len({e["uid"] for e in added}) == 4
        assert [e for e in events if e["type"] == "worker-dropped"] == []
        assert len(tasks) == 4


class TestTlsManager:
    """Discovery through a manager's Engine that is reached over TLS."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize("scheme", ["tcp", "https"])
    async def test_subscriber_through_a_tls_manager(
        self, two_nodes, service, image, scheme
    ):
        """Test the task list and events read over TLS with a client certificate.

        Given:
            A service of 2 tasks, one on each node, and the manager's Engine
            behind TLS that requires a client certificate (a relay on the
            manager's address; certificates made for this test)
        When:
            A subscriber in a container on the overlay follows the service
            with ``DOCKER_HOST=tcp://…`` and ``DOCKER_TLS_VERIFY=1``, or with
            ``DOCKER_HOST=https://…``, and ``DOCKER_CERT_PATH``
        Then:
            It should add both tasks' addresses, the other node's (which only
            the manager's task list shows) included, and drop none
        """
        # Arrange
        name = service(2, "--replicas-max-per-node", "1")
        _serving(two_nodes, name, 2)
        addresses = _addresses(two_nodes, name)
        remote = {a for a, node in addresses.items() if node == two_nodes.worker.node_id}
        assert len(remote) == 1, addresses
        with tempfile.TemporaryDirectory(prefix=f"{NAME_PREFIX}-tls-") as directory:
            certificates = make_certificates(Path(directory), two_nodes.address)
            async with tls_relay(
                certificates, two_nodes.address, two_nodes.manager.socket
            ) as port:
                engine = [
                    "-v",
                    f"{certificates}:/certs:ro",
                    "-e",
                    "DOCKER_CERT_PATH=/certs",
                    "-e",
                    f"DOCKER_HOST={scheme}://{two_nodes.address}:{port}",
                ]
                if scheme == "tcp":
                    engine += ["-e", "DOCKER_TLS_VERIFY=1"]

                # Act
                events = await _watch(two_nodes, image, name, set(addresses), *engine)

        # Assert
        added = {e["address"] for e in events if e["type"] == "worker-added"}
        assert added == set(addresses), events
        assert remote <= added
        assert [e for e in events if e["type"] == "worker-dropped"] == []


NESTED = ROOT / "tests" / "integration" / "nested.py"
NESTED_SCRIPT = ROOT / "tests" / "integration" / "nested_script.py"


@pytest_asyncio.fixture
async def manager_tcp(two_nodes: Swarm) -> AsyncIterator[str]:
    """The manager's Engine on ``tcp://<manager address>:<port>``, for tasks.

    A forwarder to the Engine's socket on the manager's address inside the
    test's private veth network, which only the two nodes reach; it stops
    when the test ends.
    """

    async def forward(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(
            "/var/run/docker.sock"
        )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            with contextlib.suppress(ConnectionError, OSError):
                dst.close()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer)
        )

    server = await asyncio.start_server(forward, host=two_nodes.address, port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"tcp://{two_nodes.address}:{port}"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await server.wait_closed()


class TestNestedAcrossNodes:
    """Routines that dispatch routines, from tasks on either node."""

    @pytest.mark.asyncio
    async def test_subscriber_in_tasks_given_the_managers_engine(
        self, two_nodes, service, image, manager_tcp
    ):
        """Test nested routines in a service whose tasks get a manager's Engine.

        Given:
            A service of 4 tasks over both nodes whose containers have
            ``DOCKER_HOST`` pointing at the manager's Engine, and a client
            pool on the manager over the service
        When:
            Routines run on every task, each dispatching routines of its own
        Then:
            Nested calls made from the other node's tasks should reach tasks
            of both nodes: inside a task, discovery through a manager sees the
            whole swarm
        """
        # Arrange
        name = service(
            4, "--replicas-max-per-node", "2", "--env", f"DOCKER_HOST={manager_tcp}"
        )
        tasks = _serving(two_nodes, name, 4)
        remote = _on(tasks, two_nodes.worker.node_id)
        local = _on(tasks, two_nodes.manager.node_id)
        command = [
            "docker",
            "run",
            "--rm",
            "--name",
            f"{NAME_PREFIX}-mn-nested",
            "--label",
            f"{RUN_LABEL}={RUN_ID}",
            "--network",
            two_nodes.overlay,
            "-v",
            f"{NESTED}:/nested.py:ro",
            "-v",
            f"{NESTED_SCRIPT}:/nested_script.py:ro",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            # The image runs as an unprivileged user: the socket's group lets it in.
            "--group-add",
            str(os.stat("/var/run/docker.sock").st_gid),
            "--entrypoint",
            "python3",
            image,
            "/nested_script.py",
            two_nodes.overlay,
            name,
            "4",
            "5",
        ]

        # Act
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(_START):
            stdout, stderr = await process.communicate()

        # Assert
        assert process.returncode == 0, stderr.decode()[-3000:]
        spread = json.loads(stdout)["spread"]
        from_remote = [set(reached) for host, reached in spread if host in remote]
        assert from_remote, f"no call ran on the other node's tasks {remote}: {spread}"
        reached = set().union(*from_remote)
        assert reached & remote and reached & local, spread
        assert reached <= tasks.keys()


class TestWorkerNodeEngine:
    """Discovery given a worker node's Engine, which has no Swarm API."""

    @pytest.mark.asyncio
    async def test_subscriber_on_a_worker_nodes_engine(self, two_nodes, service, caplog):
        """Test discovery through the Engine of a node that is no manager.

        Given:
            A service of 2 tasks, one on each node
        When:
            Two subscribers of different scopes follow it through the worker
            node's Engine
        Then:
            They should find that node's task only, and one warning should
            say that discovery sees only that node, and how to see them all
        """
        # Arrange
        caplog.set_level(logging.WARNING, logger="wool_docker")
        name = service(2, "--replicas-max-per-node", "1")
        tasks = _serving(two_nodes, name, 2)
        (own,) = _on(tasks, two_nodes.worker.node_id)
        scopes = [
            {SERVICE_LABEL: name},
            {SERVICE_LABEL: name, "wool.worker": "true"},
        ]

        # Act: both subscriptions stay open while the warning is awaited (a
        # closed subscription's hub stops before it reads the Engine's role).
        iterators = [
            aiter(
                DockerDiscovery(
                    labels=labels, docker_host=two_nodes.worker.host
                ).subscriber
            )
            for labels in scopes
        ]
        warned: list[str] = []
        try:
            found = []
            for iterator in iterators:
                async with asyncio.timeout(_START):
                    found.append(await anext(iterator))
            async with asyncio.timeout(_TIMEOUT):
                while not warned:
                    warned = [
                        r.getMessage()
                        for r in caplog.records
                        if r.name == "wool_docker.discovery"
                        and "worker node" in r.getMessage()
                    ]
                    await asyncio.sleep(0.05)
        finally:
            for iterator in iterators:
                await iterator.aclose()

        # Assert
        assert [e.type for e in found] == ["worker-added", "worker-added"]
        assert {str(e.metadata.uid).replace("-", "") for e in found} == {
            tasks[own]["container"][:32]
        }
        assert len(warned) == 1, warned
        assert "manager" in warned[0]
