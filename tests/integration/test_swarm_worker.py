"""`SwarmWorker` on a real two-node Swarm.

The machine's Engine is the manager, a second Engine in a network namespace
the other node (`multinode`). The pool runs where a pool that spreads its own
workers over a Swarm runs: in a container on the overlay on the manager, with
the manager's Engine (``examples/client.py``, or a script of the test's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio

from wool_docker.pytest import NAME_PREFIX
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL

from . import registry
from .modes_harness import ROOT
from .modes_harness import ClientContainer
from .modes_harness import Round
from .modes_harness import _engine_socket
from .modes_harness import xfail_on_known_wool_failure
from .multinode import Swarm
from .multinode import wait_for

pytestmark = pytest.mark.integration

_START = 120.0
"""Seconds a pool of Swarm workers may take to serve on a loaded machine."""

_GONE = 30.0
"""Seconds within which every task of a dead owner must be gone: its lifeline
ends at once, and its server cancels what runs and exits."""

_LIFELINE_ENDED = 15.0
"""Seconds within which a dead owner's tasks end through their lifelines:
well under the task's keepalive (25 s) and connect window (30 s), which are
what would end them if the lifeline did not."""

_KIND = "wool.docker.service"
"""The label on a Swarm worker's service object."""

OWNER_SCRIPT = ROOT / "tests" / "integration" / "swarm_owner_script.py"


def _worker_services(swarm: Swarm) -> dict[str, dict[str, Any]]:
    """The Swarm workers' services by name, with their tasks."""
    filters = urllib.parse.quote(json.dumps({"label": [f"{_KIND}=worker"]}))
    found = {}
    for service in swarm.manager.get(f"/services?filters={filters}"):
        tasks = swarm.manager.tasks(service=service["ID"])
        found[service["Spec"]["Name"]] = {"id": service["ID"], "tasks": tasks}
    return found


def _task_containers(swarm: Swarm) -> dict[str, str]:
    """Task containers of Swarm workers that run, on both nodes: id[:12] → node."""
    found = {}
    for service in _worker_services(swarm).values():
        for task in service["tasks"]:
            status = task.get("Status", {})
            container = status.get("ContainerStatus", {}).get("ContainerID")
            # `starting` until the image's healthcheck passes, serving already.
            if status.get("State") in ("starting", "running") and container:
                found[container[:12]] = task.get("NodeID", "")
    return found


def _no_worker_services(swarm: Swarm, timeout: float = _GONE) -> None:
    wait_for(
        lambda: _worker_services(swarm) == {} or None,
        timeout=timeout,
        what="no Swarm worker service left",
    )


class OwnerContainer:
    """``swarm_owner_script.py`` in a container on the overlay on the manager,
    with the manager's Engine socket (a test harness privilege)."""

    def __init__(
        self,
        swarm: Swarm,
        image: str,
        name: str,
        config: dict[str, Any],
        docker_config: Path | None = None,
    ):
        self.name = name
        socket = _engine_socket()
        config = {"image": image, "network": swarm.overlay, **config}
        # The owner's registry login, as `docker login` leaves it.
        login = (
            [
                "-v",
                f"{docker_config}:/docker-config:ro",
                "-e",
                "DOCKER_CONFIG=/docker-config",
            ]
            if docker_config is not None
            else []
        )
        self.command = [
            "docker", "run", "--rm", "-i", "--name", name,
            "--network", swarm.overlay, "--label", f"{RUN_LABEL}={RUN_ID}",
            *login,
            "-v", f"{OWNER_SCRIPT}:/owner.py:ro",
            "-v", f"{socket}:/var/run/docker.sock",
            "--group-add", str(os.stat(socket).st_gid),
            "-e", "DOCKER_HOST=unix:///var/run/docker.sock",
            "--entrypoint", "python3", image, "/owner.py", json.dumps(config),
        ]  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None
        self.stderr: list[str] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.stderr = [*self.stderr[-40:], raw.decode(errors="replace").rstrip()]

    async def record(self, key: str, timeout: float = _START) -> dict[str, Any]:
        """The next JSON line that has ``key``."""
        assert self.process is not None and self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                async for raw in self.process.stdout:
                    with contextlib.suppress(ValueError):
                        line = json.loads(raw)
                        if isinstance(line, dict) and key in line:
                            return line
        except TimeoutError:
            pass
        tail = "\n".join(self.stderr[-20:])
        raise AssertionError(f"the owner printed no {key!r}; its stderr:\n{tail}")

    async def send(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def wait(self, timeout: float = _START) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    async def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True)
        if self.process is not None:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                async with asyncio.timeout(30):
                    await self.process.wait()
            self._stderr.cancel()


@pytest.fixture(scope="module")
def anchor(two_nodes: Swarm, image: str) -> Iterator[str]:
    """A container idling on the overlay on the manager for the whole module.

    When the last container of an overlay leaves a node, the node takes the
    overlay down, and a ``docker run --network`` in that moment fails with
    "network ... not found" (seen between two tests). One container that
    stays keeps it up.
    """
    name = f"{NAME_PREFIX}-sw-anchor"
    two_nodes.manager.run(
        "run", "-d", "--rm", "--name", name, "--network", two_nodes.overlay,
        "--label", f"{RUN_LABEL}={RUN_ID}", "--entrypoint", "python3", image,
        "-c", "import signal; signal.pause()",
    )  # fmt: skip
    try:
        yield name
    finally:
        two_nodes.manager.run("rm", "--force", name, check=False)


@pytest_asyncio.fixture
async def client(
    two_nodes: Swarm, image: str, anchor: str
) -> AsyncIterator[Callable[..., Awaitable[ClientContainer]]]:
    """Starts ``examples/client.py`` in containers on the overlay on the manager.

    Afterwards fails the test if a Swarm worker service is left.
    """
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
    _assert_no_leftovers(two_nodes)


@pytest_asyncio.fixture
async def owner(
    two_nodes: Swarm, image: str, anchor: str
) -> AsyncIterator[Callable[..., Awaitable[OwnerContainer]]]:
    """Starts ``swarm_owner_script.py`` owners; removes them and checks leaks."""
    owners: list[OwnerContainer] = []

    async def start(docker_config: Path | None = None, **config: Any) -> OwnerContainer:
        name = f"{NAME_PREFIX}-sw-owner{len(owners)}"
        started = OwnerContainer(two_nodes, image, name, config, docker_config)
        owners.append(started)
        await started.start()
        return started

    yield start
    for started in owners:
        await started.remove()
    _assert_no_leftovers(two_nodes)


def _assert_no_leftovers(swarm: Swarm) -> None:
    """Remove what a test left of Swarm workers, and fail it if there was any."""
    try:
        _no_worker_services(swarm)
    except Exception:
        left = _worker_services(swarm)
        for name in left:
            swarm.remove_service(name)
        pytest.fail(f"the test left Swarm worker services {sorted(left)}")


class TestPool:
    """Pools of Swarm workers spread over both nodes."""

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
            "--spawn", "4", "--kind", "swarm", "--quorum", "4",
            "--calls", "8", "--spin", "0.3", "--interval", "0.1",
        )  # fmt: skip
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
        nodes = {two_nodes.manager.node_id, two_nodes.worker.node_id}
        assert set(tasks.values()) == nodes
        assert sum(every.hosts.values()) == 8
        _no_worker_services(two_nodes)

    @pytest.mark.asyncio
    async def test_nested_routines_on_workers_on_both_nodes(self, two_nodes, client):
        """Test nested routines on a pool of 4 SwarmWorkers with default keywords.

        Given:
            A client pool on the manager, in a container on the overlay, with
            ``spawn=4`` `SwarmWorker` s and the default ``engine_access``
            (the worker feed, through a relay on each task's lifeline)
        When:
            It dispatches rounds of 8 routines that each await another
            routine from inside their worker, then leaves its pool
        Then:
            The tasks should run on both nodes, the nested calls should reach
            all 4 without errors, and no Swarm worker service is left
        """
        # Arrange
        pool = await client(
            "--spawn", "4", "--kind", "swarm", "--quorum", "4", "--nested",
            "--calls", "8", "--interval", "0.1",
        )  # fmt: skip
        # Each worker dispatches its nested calls round robin from its own
        # index, so one round may reach only some: the rounds together must.
        reached: set[str] = set()

        def every_worker(round: Round) -> bool:
            reached.update(round.hosts)
            return len(reached) == 4

        await pool.log.wait_for(
            every_worker,
            what="nested calls on all 4 Swarm workers",
            timeout=_START,
        )
        tasks = _task_containers(two_nodes)

        # Act
        await pool.stop(timeout=_START)

        # Assert
        assert reached == set(tasks), (reached, tasks)
        nodes = {two_nodes.manager.node_id, two_nodes.worker.node_id}
        assert set(tasks.values()) == nodes
        failures, _ = pool.log.failures([])
        assert failures == [], pool.log.tail(len(pool.log.rounds))
        _no_worker_services(two_nodes)

    @pytest.mark.asyncio
    async def test_hybrid_with_a_service_and_docker_workers(self, two_nodes, client):
        """Test SwarmWorkers next to a Swarm service and DockerWorkers.

        Given:
            A Swarm service of 2 tasks labelled ``wool.worker=true``, and a
            client pool with ``spawn=4`` alternating `SwarmWorker` and
            `DockerWorker`, discovering ``wool.worker=true``
        When:
            It dispatches rounds, then leaves its pool
        Then:
            A round should reach all 6 workers; after the exit the service
            should still run its 2 tasks, and no worker the pool started
            should be left
        """
        # Arrange
        service = two_nodes.create_service(2, "--replicas-max-per-node", "1")
        label = f"{RUN_LABEL}={RUN_ID}"
        try:
            pool = await client(
                "--spawn", "4", "--kind", "mixed", "--quorum", "4",
                "--label", "wool.worker=true", "--worker-label", label,
                "--calls", "12", "--interval", "0.1",
            )  # fmt: skip

            # Act
            every = await pool.log.wait_for(
                lambda r: len(r.hosts) == 6,
                what="a round on the 2 service tasks and the 4 workers of the pool",
                timeout=_START,
            )
            await pool.stop(timeout=_START)

            # Assert
            assert len(every.hosts) == 6
            _no_worker_services(two_nodes)
            own = two_nodes.manager.out(
                "ps", "-a", "-q", "--filter", f"label={label}",
                "--filter", "label=wool.docker.managed=true",
            )  # fmt: skip
            assert own == "", f"DockerWorker containers left: {own}"
            running = two_nodes.manager.tasks(service=service, desired_state="running")
            assert len(running) == 2
        finally:
            two_nodes.remove_service(service)

    @pytest.mark.asyncio
    async def test_the_other_node_drained(self, two_nodes, client):
        """Test draining the other node while the pool runs.

        Given:
            A client pool of 4 `SwarmWorker` s on both nodes
        When:
            The other node is drained
        Then:
            No round started 5 s after its tasks are gone should reach them,
            rounds should go on on the manager's workers, and the pool should
            exit cleanly, leaving no service
        """
        # Arrange
        pool = await client(
            "--spawn", "4", "--kind", "swarm", "--quorum", "4",
            "--calls", "8", "--concurrency", "2", "--interval", "0.1",
        )  # fmt: skip
        await pool.log.wait_for(
            lambda r: len(r.hosts) == 4, what="a round on all 4", timeout=_START
        )
        tasks = _task_containers(two_nodes)
        other = two_nodes.worker.node_id
        away = {h for h, node in tasks.items() if node == other}
        assert away, tasks

        # Act
        drained_at = time.time()
        two_nodes.manager.run("node", "update", "--availability", "drain", other)
        try:
            wait_for(
                lambda: not (away & set(_task_containers(two_nodes))) or None,
                timeout=_GONE,
                what="the drained node's tasks to end",
            )
            gone = time.time()
            later = await pool.log.wait_for(
                lambda r: r.number > 0 and len(r.hosts) > 0,
                what="a round after the drain",
                timeout=_START,
                since=gone + _DROP,
            )
            await pool.stop(timeout=_START)
        finally:
            two_nodes.manager.run("node", "update", "--availability", "active", other)

        # Assert
        assert not (away & set(later.hosts)), later
        late = [str(r) for r in pool.log.since(gone + _DROP) if away & r.hosts.keys()]
        assert late == [], f"the drained node's workers still got work: {late}"
        unexpected, known = pool.log.failures([(drained_at, gone + _DROP)])
        assert unexpected == [], pool.log.tail(len(pool.log.rounds))
        xfail_on_known_wool_failure(known)


@pytest.fixture
def swarm_registry(
    two_nodes: Swarm, image: str, tmp_path: Path
) -> Iterator[tuple[registry.Registry, str]]:
    """A registry with TLS and htpasswd on the manager's address on the
    swarm's link (which the worker node reaches, and verifies: it is not a
    loopback registry), and a reference to the worker image pushed there
    from the manager; only the registry has that reference afterwards."""
    with registry.serve(tmp_path / "registry", address=two_nodes.address) as served:
        reference = served.reference("wool-docker-swarm", uuid4().hex[:12])
        config = served.docker_config("push")
        try:
            two_nodes.manager.run("tag", image, reference)
            two_nodes.manager.run("--config", str(config), "push", reference)
            two_nodes.manager.run("rmi", reference)
            yield served, reference
        finally:
            two_nodes.manager.run("rmi", "-f", reference, check=False)
            two_nodes.worker.run("rmi", "-f", reference, check=False)


class TestRegistry:
    @pytest.mark.asyncio
    async def test_a_worker_node_pulls_with_the_owners_credentials(
        self, two_nodes, owner, swarm_registry
    ):
        """Test a SwarmWorker whose image only a private registry has.

        Given:
            The worker image pushed to a registry with TLS and basic
            authentication, an owner whose ``DOCKER_CONFIG`` is logged in to
            it, and a `SwarmWorker` of that reference placed on the worker
            node (which lacks it)
        When:
            It is started
        Then:
            It should serve from the worker node, which pulled the image with
            the owner's credentials (the registry logs the worker node's
            manifest read, after its credentials were accepted)
        """
        # Arrange
        served, reference = swarm_registry
        repository, _, tag = reference.partition("/")[2].partition(":")
        node = two_nodes.worker.node_id

        # Act
        held = await owner(
            docker_config=served.docker_config("login"),
            mode="hold",
            count=1,
            image=reference,
            placements=[[f"node.id=={node}"]],
        )
        workers = (await held.record("workers"))["workers"]
        pulled = served.requests(f"HEAD /v2/{repository}/manifests/{tag}")
        on_node = two_nodes.worker.out("image", "inspect", "-f", "{{.Id}}", reference)
        await held.send("exit")
        stopped = (await held.record("stopped"))["stopped"]

        # Assert
        assert [w["node"] for w in workers] == [node]
        assert pulled >= 1
        assert on_node
        assert stopped is True
        assert await held.wait() == 0


class TestLifetime:
    """What is left when the owner goes, and when a start is cancelled."""

    @pytest.mark.asyncio
    async def test_owner_sigkill_ends_every_task(self, two_nodes, owner, image):
        """Test the lifeline across nodes.

        Given:
            An owner holding 4 `SwarmWorker` s spread over both nodes, with a
            subscriber of its own
        When:
            The owner's container is killed (SIGKILL)
        Then:
            Its subscriber should have announced each worker once, with the
            uid the worker advertised, and nothing else of them; every task
            on both nodes should end within the bound, and ``wool-docker
            prune`` should then remove the services
        """
        # Arrange
        # Two on each node: this test is about the lifeline, not placement.
        on = [
            f"node.id=={n}"
            for n in (two_nodes.manager.node_id, two_nodes.worker.node_id)
        ]
        held = await owner(
            mode="hold", count=4, watch=True, placements=[[on[0]], [on[1]]] * 2
        )
        workers = (await held.record("workers"))["workers"]
        nodes = {w["node"] for w in workers}
        events = (await held.record("events"))["events"]

        # Act
        killed = time.monotonic()
        two_nodes.manager.run("kill", held.name)
        wait_for(
            lambda: not _task_containers(two_nodes) or None,
            timeout=_GONE,
            what="every task of the killed owner's workers to end",
        )
        ended = time.monotonic() - killed
        print(f"owner SIGKILL → every task ended: {ended:.1f} s")
        # Measured 0.5-0.7 s; the lifeline's end, not a timeout, must stop them.
        assert ended < _LIFELINE_ENDED
        services = {w["service"] for w in workers}
        assert services <= set(_worker_services(two_nodes))
        wait_for(
            lambda: _prune(two_nodes, services),
            timeout=_GONE + 15,
            what="prune to remove the dead owner's services",
        )

        # Assert
        assert nodes == {two_nodes.manager.node_id, two_nodes.worker.node_id}
        uids = {w["uid"] for w in workers}
        events = [e for e in events if e[1] in uids]
        added = sorted(uid for kind, uid, _ in events if kind == "worker-added")
        assert added == sorted(uids), (events, workers)
        assert [e for e in events if e[0] != "worker-added"] == [], events
        late = {uid: round(after, 3) for kind, uid, after in events}
        print(f"worker-added, seconds after start() returned: {late}")

    @pytest.mark.asyncio
    async def test_cancelled_starts_leave_nothing(self, two_nodes, owner):
        """Test cancelling ``start()`` at a sweep of delays.

        Given:
            An owner that starts a `SwarmWorker` and cancels the start after
            0 to 3 s
        When:
            Each start is cancelled
        Then:
            Each should end (cancelled, or started and stopped), and no
            service should be left
        """
        # Arrange
        delays = [0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 3.0]

        # Act
        started = await owner(mode="cancel", delays=delays)
        outcomes = (await started.record("cancelled"))["cancelled"]
        code = await started.wait()

        # Assert
        assert code == 0, started.stderr
        assert set(outcomes) == {str(d) for d in delays}
        assert outcomes["0.0"] == "cancelled"
        _no_worker_services(two_nodes)

    @pytest.mark.asyncio
    async def test_a_routine_cannot_use_or_flood_the_lifeline(self, two_nodes, owner):
        """Test the owner's lifeline listener against its own worker.

        Given:
            An owner holding a `SwarmWorker`
        When:
            A routine replays the worker's (used) lifeline token, opens 200
            connections that send 4 KiB each and no newline, then holds 200
            idle connections while the owner starts another worker
        Then:
            The replay should be closed, the owner should still serve a call,
            the other worker should start, and the owner should stop its
            workers cleanly
        """
        # Arrange
        held = await owner(mode="hold", count=1, attack=True)
        await held.record("workers")

        # Act
        attack = await held.record("attack", timeout=_START)
        await held.send("exit")
        stopped = (await held.record("stopped"))["stopped"]

        # Assert
        assert attack["attack"]["replay_closed"] is True
        assert attack["attack"]["flooded"] == 200
        assert attack["after"]
        assert attack["held"] == 200 and attack["started"] is True
        assert stopped is True
        assert await held.wait() == 0


class TestErrors:
    """Bad input: a clear error, and nothing left."""

    @pytest.mark.asyncio
    async def test_errors_name_what_is_wrong(self, two_nodes, owner, image):
        """Test the start errors of SwarmWorker.

        Given:
            A bridge network, an overlay that is not attachable, an image tag
            only the manager has, a constraint no node meets, and an
            environment the entry point refuses
        When:
            A `SwarmWorker` is started with each
        Then:
            Each should raise its error, naming the cause (the node without
            the image, the scheduler's words, the task's last output)
        """
        # Arrange
        bridge = two_nodes.name("bridge")
        closed = two_nodes.name("closed")
        local = f"{image.rsplit(':', 1)[0]}:{two_nodes.name('local')}"
        two_nodes.manager.run(
            "network", "create", "--label", f"{RUN_LABEL}={RUN_ID}", bridge
        )
        two_nodes.manager.run("network", "create", "-d", "overlay", closed)
        two_nodes.manager.run("tag", image, local)
        try:
            cases = {
                "bridge": {"network": bridge},
                "closed": {"network": closed},
                "image": {
                    "image": local,
                    "constraints": [f"node.id=={two_nodes.worker.node_id}"],
                },
                "no_node": {"constraints": ["node.labels.wool-docker-nowhere==1"]},
                "refused": {"environment": {"WOOL_SHUTDOWN_GRACE": "-1"}},
            }

            # Act
            started = await owner(mode="errors", cases=cases, timeout=60.0)
            errors = (await started.record("errors"))["errors"]
        finally:
            two_nodes.manager.run("network", "rm", bridge, check=False)
            two_nodes.manager.run("network", "rm", closed, check=False)
            two_nodes.manager.run("rmi", local, check=False)

        # Assert
        assert errors["bridge"][0] == "NetworkNotFoundError"
        assert "attachable overlay" in errors["bridge"][1]
        assert errors["closed"][0] == "NetworkNotFoundError"
        assert "not attachable" in errors["closed"][1]
        assert errors["image"][0] == "ImageNotFoundError", errors["image"]
        assert two_nodes.worker.node_id in errors["image"][1]
        assert errors["no_node"][0] == "ContainerFailedError", errors["no_node"]
        assert "no suitable node" in errors["no_node"][1]
        assert errors["refused"][0] == "ContainerFailedError", errors["refused"]
        assert "WOOL_SHUTDOWN_GRACE" in errors["refused"][1]
        _no_worker_services(two_nodes)


def _prune(swarm: Swarm, services: set[str]) -> bool | None:
    """Run ``wool-docker prune`` against the manager; whether ``services`` are gone."""
    subprocess.run(
        # The owner ran as the image's user, not as this test's.
        [str(ROOT / ".venv" / "bin" / "wool-docker"), "prune", "--any-user"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return not (services & set(_worker_services(swarm))) or None


_DROP = 5.0
"""Seconds after which a departed task gets no more work (see test_swarm_nodes)."""
