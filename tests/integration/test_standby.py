"""Tests for `wool_docker.Standby` (issue 20, warm standby) on the real Engine.

Every standby here is built from the ``case`` fixture's image, network,
labels and name prefix, so its parked containers carry the test's label and
the leak check covers them; every pool discovers with the test's labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from typing import Final
from uuid import UUID

import pytest
import wool
from wool.runtime.discovery.base import DiscoveryEvent
from wool.runtime.worker.connection import WorkerConnection

from wool_docker import ContainerFailedError
from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import ImageNotFoundError
from wool_docker import NetworkNotFoundError
from wool_docker import Standby
from wool_docker import WoolDockerError
from wool_docker import _native

from . import nested
from . import routines
from .conftest import IDENTITY
from .conftest import Case
from .modes_harness import destroyed

TIMEOUT: Final[float] = 60.0
"""Seconds any single wait of these tests may take."""

REMOVAL: Final[float] = 15.0
"""Seconds a container may take to be removed once nothing holds it: the
bound of the `DockerWorker` owner-death test."""

STANDBY: Final[str] = f"{_native.STANDBY_LABEL}=true"
"""The label filter selecting standby containers."""

OWNER_SCRIPT: Final[Path] = Path(__file__).with_name("standby_owner_script.py")
"""The owner process the SIGKILL test kills."""


def standby_of(case: Case, size: int, **keywords: Any) -> Standby:
    """A standby of this test's image, network, labels and name prefix."""
    return Standby(
        case.image,
        case.network,
        size=size,
        labels=case.labels,
        name_prefix=case.name_prefix,
        log_output=False,
        **keywords,
    )


def factory(
    case: Case, standby: Standby, into: list[DockerWorker] | None = None, **extra: Any
) -> Callable[..., DockerWorker]:
    """A pool's worker factory claiming from ``standby``; the workers are kept
    in ``case.workers`` (so the fixture stops any a test leaves running) and
    in ``into``."""

    def make(*tags: str, **kw: Any) -> DockerWorker:
        worker = standby.worker(*tags, **extra, **kw)
        case.workers.append(worker)
        if into is not None:
            into.append(worker)
        return worker

    return make


def pool_of(
    case: Case,
    standby: Standby,
    spawn: int,
    *tags: str,
    into: list[DockerWorker] | None = None,
    **extra: Any,
) -> wool.WorkerPool:
    """A pool of ``spawn`` workers from ``standby``, entered once all serve."""
    return wool.WorkerPool(
        *tags,
        spawn=spawn,
        quorum=spawn,
        worker=factory(case, standby, into, **extra),
        discovery=DockerDiscovery(network=case.network, labels=case.labels),
    )


def running_standby(case: Case) -> set[str]:
    """Ids of this test's running standby containers, parked or claimed."""
    result = case.docker.run(
        "ps", "-q", "--no-trunc", "--filter", f"label={case.label}",
        "--filter", f"label={STANDBY}",
    )  # fmt: skip
    return set(result.stdout.split())


async def container_id(case: Case, worker: DockerWorker) -> str:
    """The full id of a started worker's container."""
    assert worker.container is not None, "the worker has no container"
    return (await case.docker.inspect(worker.container))["Id"]


async def until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` holds, reading the state it reads again and again.

    :raises AssertionError:
        Naming ``what`` if it does not hold within ``timeout`` seconds.
    """
    try:
        async with asyncio.timeout(timeout):
            while not await asyncio.to_thread(check):
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:.0f} s: {what}") from None


async def history(case: Case, since: float, action: str) -> set[str]:
    """Ids of this test's containers with Engine event ``action`` since ``since``."""
    lines = await case.docker.arun(
        "events", "--since", f"{since - 1:.3f}", "--until", f"{time.time():.3f}",
        "--filter", "type=container", "--filter", f"label={case.label}",
        "--filter", f"event={action}", "--format", "{{.ID}}",
    )  # fmt: skip
    return set(lines.split())


async def scenario(spawn: int) -> tuple[list[str], set[str]]:
    """The same work on any pool of ``spawn`` workers: echo tokens, then a
    burst of ``2 * spawn`` CPU-bound routines; returns the echoes and who
    served the burst (``host/pid``)."""
    tokens = [f"t{i}" for i in range(4 * spawn)]
    echoed = await asyncio.gather(*(routines.nap(t, 0) for t in tokens))
    served = await asyncio.gather(*(routines.burn(0.2) for _ in range(2 * spawn)))
    return list(echoed), set(served)


class Watch:
    """A `DockerDiscovery` subscriber iterated in the background; keeps every
    event it yields, in order."""

    def __init__(self, discovery: DockerDiscovery):
        self.events: list[DiscoveryEvent] = []
        self._discovery = discovery
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        try:
            async for event in self._discovery.subscriber:
                self.events.append(event)
                self._changed.set()
        finally:
            self._changed.set()

    def uids(self) -> set[UUID]:
        """Every uid any event named."""
        return {event.metadata.uid for event in self.events}

    async def until(
        self, check: Callable[[list[DiscoveryEvent]], bool], what: str
    ) -> None:
        """Wait until ``check(events)`` holds; fail naming ``what``."""
        assert self._task is not None
        try:
            async with asyncio.timeout(TIMEOUT):
                while not check(self.events):
                    if self._task.done():
                        self._task.result()
                        raise AssertionError(f"the subscriber ended before {what}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no discovery event within {TIMEOUT:.0f} s: {what}"
            ) from None


def has(kind: str, uids: Iterable[UUID]) -> Callable[[list[DiscoveryEvent]], bool]:
    """A `Watch.until` check: a ``kind`` event was seen for each of ``uids``."""
    wanted = set(uids)
    return lambda events: wanted <= {e.metadata.uid for e in events if e.type == kind}


async def cli_ps(case: Case) -> str:
    """What ``wool-docker ps`` prints for this test's labels and network."""
    labels = [arg for k, v in case.labels.items() for arg in ("--label", f"{k}={v}")]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wool_docker.cli", "ps", "--network", case.network,
        *labels, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


class TestStandbyFill:
    @pytest.mark.asyncio
    async def test_filled_with_no_parked_container_announced(self, case, docker):
        """Test that parked containers exist but no discovery announces them.

        Given:
            A standby of 2, filled, and a subscriber, ``list_workers`` and
            ``wool-docker ps`` scoped to the test's labels and network
        When:
            One worker is claimed from it, then stopped
        Then:
            2 running containers should carry the standby label and the
            test's labels but no worker uid and no healthcheck; nothing
            should be listed before the claim; while the worker serves,
            ``list_workers`` and ``ps`` should show it alone; and the
            subscriber should yield only that worker's events up to its
            drop
        """
        # Arrange
        standby = standby_of(case, 2)
        discovery = DockerDiscovery(network=case.network, labels=case.labels)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            parked_count = standby.parked
            parked = running_standby(case)
            documents = [await docker.inspect(c) for c in parked]
            listed_before = await _native.list_workers(case.labels, case.network)
            ps_before = await cli_ps(case)

            # Act
            async with Watch(discovery) as watch:
                worker = factory(case, standby)("probe")
                await worker.start()
                claimed = await container_id(case, worker)
                listed = await _native.list_workers(case.labels, case.network)
                ps_during = await cli_ps(case)
                await watch.until(has("worker-added", [worker.uid]), "claimed added")
                await worker.stop()
                await watch.until(has("worker-dropped", [worker.uid]), "claimed dropped")

        # Assert
        assert len(parked) == 2
        assert parked_count == 2
        for document in documents:
            labels = document["Config"]["Labels"]
            assert labels[_native.STANDBY_LABEL] == "true"
            assert labels.items() >= case.labels.items()
            assert labels["wool.worker"] == "true"
            assert "wool.uid" not in labels
            assert document["State"]["Running"] is True
            assert "Health" not in document["State"]
        assert listed_before == []
        assert ps_before.strip().count("\n") == 0, ps_before
        assert claimed in parked
        assert [record["uid"] for record, _ in listed] == [str(worker.uid)]
        (row,) = ps_during.strip().splitlines()[1:]
        assert str(worker.uid) in row
        assert not any(c[:12] in ps_during for c in parked - {claimed})
        assert watch.uids() == {worker.uid}
        assert case.containers() == []


class TestStandbyPool:
    @pytest.mark.asyncio
    async def test_pool_from_filled_standby(self, case, docker):
        """Test a pool of 2 from a filled standby of 2, against `LocalWorker`.

        Given:
            A filled standby of 2, and a pool of 2 workers tagged ``alpha``
            with extra ``zone=west`` claiming from it
        When:
            Tokens are echoed and a burst of 4 CPU-bound routines runs, and
            the same on a pool of 2 `LocalWorker`s
        Then:
            The pool's containers should be the parked ones; the burst
            should run on both; subscriber and ``list_workers`` records
            should carry each worker's uid, tags and extra at its
            container's address; and the echoes and the number of servers
            should match `LocalWorker`'s
        """
        # Arrange
        standby = standby_of(case, 2)
        discovery = DockerDiscovery(network=case.network, labels=case.labels)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            parked = running_standby(case)
            pool = pool_of(case, standby, 2, "alpha", zone="west")

            # Act
            async with Watch(discovery) as watch, pool:
                workers = list(case.workers)
                claimed = {w.uid: await container_id(case, w) for w in workers}
                echoed, served = await scenario(2)
                await watch.until(has("worker-added", claimed), "both workers added")
                listed = await _native.list_workers(case.labels, case.network)
                addresses = {w.uid: w.address for w in workers}
        async with asyncio.timeout(TIMEOUT), case.pool("local", spawn=2):
            local_echoed, local_served = await scenario(2)

        # Assert
        assert set(claimed.values()) == parked
        assert {s.split("/")[0] for s in served} == {c[:12] for c in parked}
        added = [e for e in watch.events if e.type == "worker-added"]
        assert {e.metadata.uid for e in added} == set(claimed)
        for event in added:
            assert event.metadata.tags == frozenset({"alpha"})
            assert dict(event.metadata.extra) == {"zone": "west"}
            assert event.metadata.address == addresses[event.metadata.uid]
        records = {record["uid"]: record for record, _ in listed}
        assert set(records) == {str(uid) for uid in claimed}
        for uid, container in claimed.items():
            record = records[str(uid)]
            assert record["container_id"] == container
            assert record["tags"] == ["alpha"]
            assert json.loads(record["extra"]) == {"zone": "west"}
        assert echoed == local_echoed
        assert len(served) == len(local_served) == 2
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_pool_larger_than_standby(self, case):
        """Test a claim when the standby has nothing left to give.

        Given:
            A filled standby of 1
        When:
            A pool of 2 workers claims from it
        Then:
            One worker should get the parked container and the other a
            fresh container (labelled with its uid), and a burst should run
            on both
        """
        # Arrange
        standby = standby_of(case, 1)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            (parked,) = running_standby(case)

            # Act
            async with pool_of(case, standby, 2):
                workers = list(case.workers)
                containers = {await container_id(case, w): w for w in workers}
                _, served = await scenario(2)
                fresh_labels = [
                    (await case.docker.inspect(c))["Config"]["Labels"]
                    for c in containers
                    if c != parked
                ]

        # Assert
        assert len(containers) == 2
        assert parked in containers
        (labels,) = fresh_labels
        (fresh,) = set(containers) - {parked}
        assert labels["wool.uid"] == str(containers[fresh].uid)
        assert _native.STANDBY_LABEL not in labels
        assert {s.split("/")[0] for s in served} == {c[:12] for c in containers}
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_two_pools_claiming_at_once(self, case):
        """Test two pools entered at once from one standby.

        Given:
            A filled standby of 3, and two pools of 2 workers (tagged ``a``
            and ``b``) claiming from it, each entered in its own task
        When:
            Both pools are entered at once and, while both serve, each runs
            a burst
        Then:
            The 4 workers should have 4 distinct containers, 3 of them the
            parked ones; each container should be listed as exactly the
            worker that claimed it; and each pool's burst should run on its
            own 2 containers
        """
        # Arrange
        standby = standby_of(case, 3)
        # Both pools and this test: no burst starts until both pools serve.
        both_up = asyncio.Barrier(3)
        listed_done = asyncio.Barrier(3)

        async def run(tag: str) -> tuple[dict[UUID, str], set[str]]:
            mine: list[DockerWorker] = []
            async with pool_of(case, standby, 2, tag, into=mine):
                owned = {w.uid: await container_id(case, w) for w in mine}
                await both_up.wait()
                await listed_done.wait()
                served = await asyncio.gather(*(routines.burn(0.2) for _ in range(4)))
            return owned, {s.split("/")[0] for s in served}

        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            parked = running_standby(case)

            # Act
            runs = asyncio.gather(run("a"), run("b"))
            await both_up.wait()
            listed = await _native.list_workers(case.labels, case.network)
            await listed_done.wait()
            (owned_a, served_a), (owned_b, served_b) = await runs

        # Assert
        owned = {**owned_a, **owned_b}
        assert len(owned) == 4
        assert len(set(owned.values())) == 4
        assert parked < set(owned.values())
        assert {r["uid"]: r["container_id"] for r, _ in listed} == {
            str(uid): c for uid, c in owned.items()
        }
        assert served_a == {c[:12] for c in owned_a.values()}
        assert served_b == {c[:12] for c in owned_b.values()}
        assert case.containers() == []


class TestStandbyFailures:
    @pytest.mark.asyncio
    async def test_parked_container_killed(self, case, docker):
        """Test a parked container that dies.

        Given:
            A filled standby of 2
        When:
            One parked container is killed with ``docker kill``
        Then:
            It should be removed, a new container should take its place
            (``parked`` back at 2, a new id), and a worker claimed after
            that should get a live parked container
        """
        # Arrange
        standby = standby_of(case, 2)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            before = running_standby(case)
            victim = sorted(before)[0]
            since = time.time()

            # Act
            await docker.arun("kill", victim)
            await destroyed(
                [victim], f"label={case.label}", since=since, timeout=REMOVAL
            )
            await standby.filled()
            after = running_standby(case)
            parked_count = standby.parked
            worker = factory(case, standby)()
            await worker.start()
            claimed = await container_id(case, worker)
            connection = WorkerConnection(worker.metadata.address)
            try:
                idle = await connection.idle(timeout=TIMEOUT)
            finally:
                await connection.close()
            await worker.stop()

        # Assert
        assert parked_count == 2
        assert len(after) == 2
        assert victim not in after
        assert len(after - before) == 1
        assert claimed in after
        assert idle >= 0
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("when", ["before", "during"])
    async def test_claim_as_parked_container_is_killed(self, case, docker, when):
        """Test claiming while the only parked container is being killed.

        Given:
            A filled standby of 1
        When:
            3 times: its parked container is killed with ``docker kill``,
            and a worker is started once the kill returned (before the
            standby may have seen the exit) or at the same time
        Then:
            A start should fail only if the kill landed after the claim
            reached the container (it printed something after parking, as
            a fresh worker killed while starting would fail), never because
            it was claimed dead; a worker that started in a live container
            should serve
        """
        # Arrange
        standby = standby_of(case, 1)
        rounds = []
        async with asyncio.timeout(TIMEOUT * 3), standby:
            for _ in range(3):
                await standby.filled()
                (victim,) = running_standby(case)
                victim_name = (await docker.inspect(victim))["Name"].lstrip("/")
                worker = factory(case, standby)()

                # Act
                failure = None
                try:
                    if when == "before":
                        await docker.arun("kill", victim)
                        await worker.start()
                    else:
                        await asyncio.gather(docker.arun("kill", victim), worker.start())
                except ContainerFailedError as e:
                    failure = e
                idle = None
                served_in = worker.container
                if failure is None:
                    # The victim served if the kill landed after its claim
                    # finished; then it is gone, and only another can serve.
                    if served_in != victim_name:
                        connection = WorkerConnection(worker.metadata.address)
                        try:
                            idle = await connection.idle(timeout=TIMEOUT)
                        finally:
                            await connection.close()
                    await worker.stop()
                rounds.append((failure, served_in, idle))

        # Assert
        for failure, served_in, idle in rounds:
            if failure is not None:
                assert when == "during", failure
                after_parked = failure.logs.split(_native.PARKED_PREFIX, 1)[-1]
                assert after_parked.strip().count("\n") >= 1, failure
            elif idle is None:
                assert when == "during", f"{served_in} was claimed dead"
            else:
                assert idle >= 0
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_claim_cancelled_at_a_sweep_of_delays(self, case):
        """Test cancelling worker starts at every point of a claim.

        Given:
            A standby of 2 and a subscriber of the test's scope
        When:
            Worker starts (tagged ``sweep``, with their delay as extra) are
            cancelled after 0, 1, 5, 10, 20, 50, 100 and 300 ms, each once
            from a filled standby and once right after the previous
            cancellation (a claim waiting for a container being parked);
            starts that win the race are stopped
        Then:
            The containers of cancelled claims should be removed while the
            standby stays open (only the 2 parked remain); the subscriber
            should announce no uid but the workers' and never a parked
            container; a cancelled worker may be announced only with its
            whole record (its tags and extra; its server bound before the
            cancellation landed) and must then be dropped; and a pool of 1
            from the standby should then claim a parked container and serve
        """
        # Arrange
        delays = (0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3)
        standby = standby_of(case, 2)
        discovery = DockerDiscovery(network=case.network, labels=case.labels)
        cancelled: dict[UUID, float] = {}
        completed: set[UUID] = set()

        async def cancel_after(delay: float) -> None:
            # Not `factory`: the test keeps no reference to a cancelled worker.
            worker = standby.worker("sweep", delay=str(delay))
            starting = asyncio.create_task(worker.start())
            await asyncio.sleep(delay)
            starting.cancel()
            try:
                await starting
            except asyncio.CancelledError:
                cancelled[worker.uid] = delay
            else:
                completed.add(worker.uid)
                await worker.stop()

        async with asyncio.timeout(TIMEOUT * 4), standby, Watch(discovery) as watch:
            # Act
            for delay in delays:
                await standby.filled()
                await cancel_after(delay)
                await cancel_after(delay)
            await standby.filled()
            await until(
                lambda: len(case.containers()) == 2,
                "only the 2 parked containers remain",
                timeout=REMOVAL,
            )
            parked = running_standby(case)
            async with pool_of(case, standby, 1):
                (worker,) = case.workers
                claimed = await container_id(case, worker)
                host = await routines.hostname()
            announced = watch.uids() - {worker.uid}
            await watch.until(
                has("worker-dropped", announced | {worker.uid}),
                "every announced worker dropped",
            )

        # Assert
        assert cancelled, "every start won its race: the sweep cancelled nothing"
        assert watch.uids() <= set(cancelled) | completed | {worker.uid}
        for event in watch.events:
            if event.type == "worker-added" and event.metadata.uid in cancelled:
                delay = cancelled[event.metadata.uid]
                assert event.metadata.tags == frozenset({"sweep"}), delay
                assert dict(event.metadata.extra) == {"delay": str(delay)}
        assert claimed in parked
        assert host == claimed[:12]
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_owner_killed(self, case, docker):
        """Test what happens to parked and claimed containers when the owner dies.

        Given:
            A process that opened a standby of 2 (refill on claim) and a pool
            of 1 from it, so 2 containers are parked and 1 claimed
        When:
            That process is killed with ``SIGKILL``
        Then:
            All 3 containers should be removed within 15 seconds
        """
        # Arrange
        args = {
            "image": case.image,
            "network": case.network,
            "labels": case.labels,
            "name_prefix": case.name_prefix,
        }
        owner = await asyncio.create_subprocess_exec(
            sys.executable,
            str(OWNER_SCRIPT),
            json.dumps(args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert owner.stdout is not None
        try:
            async with asyncio.timeout(TIMEOUT * 2):
                line = (await owner.stdout.readline()).decode()
            if not line:
                _, stderr = await owner.communicate()
                pytest.fail(f"the owner exited before serving: {stderr.decode()}")
            claimed = (await docker.inspect(json.loads(line)["claimed"]))["Id"]
            containers = running_standby(case)
            since = time.time()

            # Act
            owner.kill()
            async with asyncio.timeout(TIMEOUT):
                await owner.wait()

            # Assert
            await destroyed(
                containers, f"label={case.label}", since=since, timeout=REMOVAL
            )
        finally:
            if owner.returncode is None:
                owner.kill()
            await owner.communicate()
            # A killed owner cannot remove its feed directory (the next owner
            # to start removes those of dead processes); this test removes it.
            for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()):
                if base:
                    pattern = os.path.join(base, f"wool-docker-feed-{owner.pid}-*")
                    for directory in glob.glob(pattern):
                        shutil.rmtree(directory, ignore_errors=True)
        assert len(containers) == 3
        assert claimed in containers
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("filled", [True, False], ids=["filled", "parking"])
    async def test_exit_with_claims_in_flight(self, case, filled):
        """Test leaving the standby while worker starts are pending.

        Given:
            A standby of 2, filled or still parking, and 3 worker starts
            begun from it
        When:
            The standby is exited before the starts finish
        Then:
            Each start should either succeed, with a worker that serves and
            stops cleanly, or fail with a wool-docker error; ``parked``
            should be 0; and no container should remain
        """
        # Arrange
        standby = standby_of(case, 2)
        since = time.time()
        async with asyncio.timeout(TIMEOUT * 2):
            async with standby:
                if filled:
                    await standby.filled()
                make = factory(case, standby)
                workers = [make() for _ in range(3)]
                starts = [asyncio.create_task(w.start()) for w in workers]
                # Let every start reach its claim before the exit.
                await asyncio.sleep(0)

            # Act (the exit above)
            results = await asyncio.gather(*starts, return_exceptions=True)
            idles = []
            for worker, result in zip(workers, results, strict=True):
                if result is None:
                    connection = WorkerConnection(worker.metadata.address)
                    try:
                        idles.append(await connection.idle(timeout=TIMEOUT))
                    finally:
                        await connection.close()
                    await worker.stop()
            parked_count = standby.parked
            created = await history(case, since, "create")
            await destroyed(created, f"label={case.label}", since=since, timeout=REMOVAL)

        # Assert
        failures = [r for r in results if r is not None]
        assert all(isinstance(r, WoolDockerError) for r in failures), failures
        assert len(idles) == len(results) - len(failures)
        assert all(w.container is None for w in workers)
        assert parked_count == 0
        assert created
        assert case.containers() == []


class TestStandbyServing:
    @pytest.mark.asyncio
    async def test_claim_with_credentials(self, case, docker, credentials):
        """Test an mTLS pool claiming from a standby.

        Given:
            A filled standby of 1, and a pool of 1 worker with mTLS
            credentials and identity ``worker.wool.test`` claiming from it
        When:
            A routine is dispatched to it
        Then:
            The routine should run in the parked container, which should
            advertise a secure worker with that identity; the private key
            should be in none of its labels, environment variables or
            output
        """
        # Arrange
        standby = standby_of(case, 1)
        workers: list[DockerWorker] = []
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            (parked,) = running_standby(case)
            pool = wool.WorkerPool(
                spawn=1,
                quorum=1,
                worker=factory(case, standby, workers),
                discovery=DockerDiscovery(network=case.network, labels=case.labels),
                credentials=credentials.as_provider(peers=IDENTITY),
                identity=IDENTITY,
            )

            # Act
            async with pool:
                (worker,) = workers
                host = await routines.hostname()
                metadata = worker.metadata
                claimed = await container_id(case, worker)
                inspected = await docker.inspect(claimed)
                logs = docker.run("logs", claimed)

        # Assert
        key_lines = [
            line
            for line in credentials.worker_key.decode().splitlines()
            if line and not line.startswith("-----")
        ]
        labels = json.dumps(inspected["Config"]["Labels"])
        env = "\n".join(inspected["Config"]["Env"])
        output = logs.stdout + logs.stderr
        assert claimed == parked
        assert host == claimed[:12]
        assert metadata.secure is True
        assert metadata.identity == IDENTITY
        for text in (labels, env, output):
            assert "PRIVATE KEY" not in text
            assert not any(line in text for line in key_lines)
        assert "wool-docker parked" in output
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_nested_routines_in_claimed_workers(self, case):
        """Test routines that dispatch routines from claimed containers.

        Given:
            A filled standby of 2 and a pool of 2 workers claiming from it
            (their containers read the owner's worker feed, the default)
        When:
            A recursive fib runs, and 4 routines each dispatch 4 more
        Then:
            Fib should return the right value, and the nested calls should
            reach both claimed containers and nothing else: the feed
            announces claimed workers from their ready lines
        """
        # Arrange
        standby = standby_of(case, 2)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            parked = running_standby(case)

            # Act
            async with pool_of(case, standby, 2):
                claimed = {await container_id(case, w) for w in case.workers}
                result = await nested.fib(7)
                spread = await asyncio.gather(*(nested.spread(4) for _ in range(4)))

        # Assert
        hosts = {c[:12] for c in claimed}
        reached = set().union(*(set(inner) for _, inner in spread))
        assert claimed == parked
        assert result == 13
        assert {outer for outer, _ in spread} <= hosts
        assert reached == hosts
        assert case.containers() == []


class TestStandbyInput:
    @pytest.mark.asyncio
    async def test_enter_with_missing_image(self, case):
        """Test a standby of an image the Engine does not have.

        Given:
            A standby of an image name no image has, with ``pull="never"``
        When:
            It is entered
        Then:
            It should raise `ImageNotFoundError` and create no container
        """
        # Arrange
        standby = Standby(
            f"{case.name_prefix}-missing:none",
            case.network,
            size=1,
            labels=case.labels,
            name_prefix=case.name_prefix,
            pull="never",
        )

        # Act & assert
        with pytest.raises(ImageNotFoundError):
            async with asyncio.timeout(TIMEOUT), standby:
                pass
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_enter_with_missing_network(self, case):
        """Test a standby on a network that does not exist.

        Given:
            A standby on a network name no network has
        When:
            It is entered
        Then:
            It should raise `NetworkNotFoundError` and create no container
        """
        # Arrange
        standby = Standby(
            case.image,
            f"{case.network}-missing",
            size=1,
            labels=case.labels,
            name_prefix=case.name_prefix,
        )

        # Act & assert
        with pytest.raises(NetworkNotFoundError):
            async with asyncio.timeout(TIMEOUT), standby:
                pass
        assert case.containers() == []

    @pytest.mark.parametrize(
        "keywords",
        [
            pytest.param({"shutdown_grace_period": 5.0}, id="shutdown_grace_period"),
            pytest.param({"identity": IDENTITY}, id="identity"),
            pytest.param({"extra": {"zone": "west"}}, id="extra"),
        ],
    )
    def test___init___with_per_worker_keyword(self, image, keywords):
        """Test a worker's own keyword passed to the standby.

        Given:
            A keyword that only a worker can have
        When:
            A `Standby` is constructed with it
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError):
            Standby(image, **keywords)

    @pytest.mark.asyncio
    async def test___init___with_credentials(self, case, credentials):
        """Test credentials passed to the standby instead of its workers.

        Given:
            Real mTLS credentials
        When:
            A `Standby` is constructed with ``credentials=``
        Then:
            It should raise `ValueError` naming the keyword, and create no
            container
        """
        # Act & assert
        with pytest.raises(ValueError, match="credentials"):
            standby_of(case, 1, credentials=credentials)
        assert case.containers() == []


class TestStandbyRefill:
    @pytest.mark.asyncio
    async def test_refill_on_claim(self, case):
        """Test ``refill="claim"``: the standby refills while the pool runs.

        Given:
            A filled standby of 2 that refills on claim
        When:
            A pool of 1 claims from it
        Then:
            The standby should be filled again while the pool still serves,
            with a container that was not parked before, and the pool's
            worker should still run routines
        """
        # Arrange
        standby = standby_of(case, 2, refill="claim")
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            before = running_standby(case)

            # Act
            async with pool_of(case, standby, 1):
                (worker,) = case.workers
                claimed = await container_id(case, worker)
                await standby.filled()
                parked_count = standby.parked
                during = running_standby(case)
                host = await routines.hostname()

        # Assert
        assert claimed in before
        assert parked_count == 2
        assert len(during) == 3
        assert len(during - before) == 1
        assert host == claimed[:12]
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_refill_on_release(self, case):
        """Test ``refill="release"``: no refill until the pool is done.

        Given:
            A filled standby of 2 that refills on release (the default)
        When:
            A pool of 1 claims from it, runs a burst of CPU-bound routines,
            and exits
        Then:
            No container should be created while the pool runs (1 parked),
            and after the pool exits the standby should be filled again
            with a new container
        """
        # Arrange
        standby = standby_of(case, 2)
        async with asyncio.timeout(TIMEOUT * 2), standby:
            await standby.filled()
            before = running_standby(case)
            since = time.time()

            # Act
            async with pool_of(case, standby, 1):
                (worker,) = case.workers
                claimed = await container_id(case, worker)
                await asyncio.gather(*(routines.burn(0.2) for _ in range(4)))
                parked_during = standby.parked
                # The history starts a margin before `since`: the parked ones.
                created_during = await history(case, since, "create") - before
            await standby.filled()
            after = running_standby(case)
            created_after = await history(case, since, "create") - before

        # Assert
        assert claimed in before
        assert parked_during == 1
        assert created_during == set()
        assert len(after) == 2
        assert claimed not in after
        assert len(created_after) == 1
        assert created_after == after - before
        assert case.containers() == []
