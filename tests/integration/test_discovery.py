"""Real-daemon tests of `wool_docker.DockerDiscovery`."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import uuid
from collections.abc import AsyncIterator
from collections.abc import Iterator

import pytest
import wool
from wool.runtime.discovery.base import DiscoveryEvent

from wool_docker import DockerDiscovery
from wool_docker import MalformedLabelsWarning
from wool_docker import NetworkNotFoundError
from wool_docker import NotPublishedError
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL
from wool_docker.pytest import DockerCli

pytestmark = pytest.mark.integration

_TIMEOUT = 30.0
_RUN = uuid.uuid4().hex[:8]


_cli = DockerCli()


def _docker(*args: str) -> str:
    """Run the docker CLI (test set-up only) and return its output."""
    return _cli.run(*args).stdout.strip()


def _ip(container: str, network: str) -> str:
    return _docker(
        "inspect",
        "-f",
        f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
        container,
    )


@pytest.fixture
def run(selector: dict[str, str], image: str) -> Iterator:
    """Start worker containers by hand (``docker run``); all removed afterwards."""
    label = next(iter(selector.items()))

    def start(network: str, *labels: str, health=()) -> str:
        args = ["run", "-d", "--network", network, "--label", "wool.worker=true"]
        args += ["--label", f"{RUN_LABEL}={RUN_ID}"]
        args += list(health)
        args += ["--label", f"{label[0]}={label[1]}"]
        for item in labels:
            args += ["--label", item]
        return _docker(*args, image)

    yield start
    ids = _docker("ps", "-aq", "--filter", f"label={label[0]}={label[1]}").split()
    if ids:
        _cli.remove_containers(*ids)
    assert not _docker("ps", "-aq", "--filter", f"label={label[0]}={label[1]}")


async def _next(events: AsyncIterator[DiscoveryEvent], what: str) -> DiscoveryEvent:
    try:
        async with asyncio.timeout(_TIMEOUT):
            return await anext(events)
    except TimeoutError:
        raise AssertionError(f"no discovery event within {_TIMEOUT} s: {what}") from None


@contextlib.asynccontextmanager
async def _subscription(discovery: DockerDiscovery) -> AsyncIterator[AsyncIterator]:
    events = aiter(discovery.subscriber)
    try:
        yield events
    finally:
        await events.aclose()  # type: ignore[attr-defined]


class TestDockerDiscovery:
    """Tests for `wool_docker.DockerDiscovery` against the real daemon."""

    @pytest.mark.asyncio
    async def test___aiter___with_docker_run_container(self, network, selector, run):
        """Test discovering a container started with ``docker run``.

        Given:
            A subscriber scoped to a network and a test label.
        When:
            A worker container is started by hand, then killed.
        Then:
            It should yield worker-added with the container's IP on the network
            and the image's wool version, then worker-dropped for the same uid.
        """
        # Arrange
        discovery = DockerDiscovery(network=network, labels={**selector})
        async with _subscription(discovery) as events:
            # Act
            container = run(network)
            added = await _next(events, "worker-added after docker run")
            address = f"{_ip(container, network)}:50051"
            _docker("kill", container)
            dropped = await _next(events, "worker-dropped after docker kill")

        # Assert
        assert added.type == "worker-added"
        assert added.metadata.address == address
        assert added.metadata.version == wool.protocol.__version__
        assert added.metadata.uid == uuid.UUID(hex=container[:32])
        assert dropped.type == "worker-dropped"
        assert dropped.metadata.uid == added.metadata.uid

    @pytest.mark.asyncio
    async def test___aiter___with_paused_container(self, network, selector, run):
        """Test that pausing a container drops it and unpausing adds it back.

        Given:
            A serving, discovered worker container.
        When:
            It is paused, then unpaused.
        Then:
            It should yield worker-dropped, then worker-added.
        """
        # Arrange
        discovery = DockerDiscovery(network=network, labels=selector)
        async with _subscription(discovery) as events:
            container = run(network)
            await _next(events, "worker-added")

            # Act
            _docker("pause", container)
            paused = await _next(events, "worker-dropped on pause")
            _docker("unpause", container)
            unpaused = await _next(events, "worker-added on unpause")

        # Assert
        assert paused.type == "worker-dropped"
        assert unpaused.type == "worker-added"

    @pytest.mark.asyncio
    async def test___aiter___with_existing_containers(self, network, selector, run):
        """Test that a new iteration first yields every serving container.

        Given:
            Two worker containers already discovered by one iteration.
        When:
            A second, independent iteration starts.
        Then:
            It should first yield both as worker-added.
        """
        # Arrange
        discovery = DockerDiscovery(network=network, labels=selector)
        first = [run(network), run(network)]
        async with _subscription(discovery) as events:
            seen = {(await _next(events, "initial worker")).metadata.uid for _ in first}

            # Act
            async with _subscription(discovery) as again:
                replay = {
                    (await _next(again, "replayed worker")).metadata.uid for _ in first
                }

        # Assert
        assert seen == replay == {uuid.UUID(hex=c[:32]) for c in first}

    @pytest.mark.asyncio
    async def test___aiter___with_network_scope(self, network, selector, run):
        """Test that network scoping ignores other networks and disconnects drop.

        Given:
            A subscriber scoped to one network, a worker on another network and
            a worker on the scoped one.
        When:
            The scoped worker is disconnected from the network.
        Then:
            It should see only the scoped worker, then drop it.
        """
        # Arrange
        other = f"wdd-{_RUN}-{uuid.uuid4().hex[:6]}"
        _docker("network", "create", other)
        try:
            discovery = DockerDiscovery(network=network, labels=selector)
            async with _subscription(discovery) as events:
                run(other)
                inside = run(network)
                added = await _next(events, "worker-added for the scoped worker")

                # Act
                _docker("network", "disconnect", network, inside)
                dropped = await _next(events, "worker-dropped on disconnect")
        finally:
            for c in _docker("ps", "-aq", "--filter", f"network={other}").split():
                _cli.remove_containers(c)
            _cli.run("network", "rm", other, check=False)

        # Assert
        assert added.metadata.uid == uuid.UUID(hex=inside[:32])
        assert dropped.type == "worker-dropped"
        assert dropped.metadata.uid == added.metadata.uid

    @pytest.mark.asyncio
    async def test___aiter___with_malformed_labels(self, network, selector, run):
        """Test that a container with bad labels is skipped with one warning.

        Given:
            A container whose ``wool.extra`` label is not JSON.
        When:
            A good container starts after it.
        Then:
            It should warn once naming the label and still discover the good
            container.
        """
        # Arrange
        discovery = DockerDiscovery(network=network, labels=selector)
        run(network, "wool.extra=not-json")
        with pytest.warns(MalformedLabelsWarning, match="wool.extra"):
            async with _subscription(discovery) as events:
                # Act
                good = run(network)
                added = await _next(events, "worker-added for the good container")

        # Assert
        assert added.metadata.uid == uuid.UUID(hex=good[:32])

    @pytest.mark.asyncio
    async def test___aiter___with_unhealthy_container(self, network, selector, run):
        """Test that a failing healthcheck drops a worker and recovery re-adds it.

        Given:
            A discovered worker container whose healthcheck fails once a file
            exists.
        When:
            The file is created, then removed.
        Then:
            It should yield worker-dropped, then worker-added.
        """
        # Arrange
        discovery = DockerDiscovery(network=network, labels=selector)
        async with _subscription(discovery) as events:
            container = run(
                network,
                health=[
                    "--health-cmd",
                    "test ! -f /tmp/sick",
                    "--health-interval",
                    "1s",
                    # The image's 30 s start period would hide failures.
                    "--health-start-period",
                    "1ms",
                    "--health-retries",
                    "1",
                ],
            )
            await _next(events, "worker-added")

            # Act
            _docker("exec", container, "touch", "/tmp/sick")
            sick = await _next(events, "worker-dropped when unhealthy")
            _docker("exec", container, "rm", "/tmp/sick")
            healed = await _next(events, "worker-added when healthy again")

        # Assert
        assert sick.type == "worker-dropped"
        assert healed.type == "worker-added"

    @pytest.mark.asyncio
    async def test___aiter___with_several_networks(self, network, selector, run):
        """Test the address of an unscoped worker on several networks.

        Given:
            Unscoped discovery and two containers on two user networks, one
            labelled ``wool.network`` naming the later network by name.
        When:
            Both are discovered.
        Then:
            The unlabelled one should be addressed on the first network by name
            and the labelled one on the network its label names.
        """
        # Arrange
        second = f"wdd-{_RUN}-{uuid.uuid4().hex[:6]}"
        _docker("network", "create", second)
        first_name, second_name = sorted([network, second])
        try:
            discovery = DockerDiscovery(labels=selector)
            async with _subscription(discovery) as events:
                plain = run(network)
                chosen = run(network, f"wool.network={second_name}")
                for c in (plain, chosen):
                    _docker("network", "connect", second, c)
                seen = {}
                async with asyncio.timeout(_TIMEOUT):
                    async for event in events:
                        seen[event.metadata.uid] = event.metadata.address
                        if len(seen) == 2 and all(
                            seen[uuid.UUID(hex=c[:32])].split(":")[0]
                            in (_ip(c, first_name), _ip(c, second_name))
                            for c in (plain, chosen)
                        ):
                            break
                # Act
                expected = {
                    uuid.UUID(hex=plain[:32]): f"{_ip(plain, first_name)}:50051",
                    uuid.UUID(hex=chosen[:32]): f"{_ip(chosen, second_name)}:50051",
                }
        finally:
            for c in _docker("ps", "-aq", "--filter", f"network={second}").split():
                _cli.remove_containers(c)
            _cli.run("network", "rm", second, check=False)

        # Assert
        assert seen == expected

    @pytest.mark.asyncio
    async def test___aiter___with_address_change(self, network, selector, run):
        """Test that a change of an unscoped worker's address is an update.

        Given:
            Unscoped discovery of a worker on one network.
        When:
            The container joins a second network whose name sorts first, which
            the address rule prefers.
        Then:
            It should yield worker-updated with the address on that network.
        """
        # Arrange
        first = f"wdd-0-{_RUN}-{uuid.uuid4().hex[:6]}"
        _docker("network", "create", first)
        try:
            discovery = DockerDiscovery(labels=selector)
            async with _subscription(discovery) as events:
                container = run(network)
                added = await _next(events, "worker-added")
                before = f"{_ip(container, network)}:50051"

                # Act
                _docker("network", "connect", first, container)
                updated = await _next(events, "worker-updated after network connect")
                expected = f"{_ip(container, first)}:50051"
        finally:
            for c in _docker("ps", "-aq", "--filter", f"network={first}").split():
                _cli.remove_containers(c)
            _cli.run("network", "rm", first, check=False)

        # Assert
        assert added.metadata.address == before
        assert updated.type == "worker-updated"
        assert updated.metadata.uid == added.metadata.uid
        assert updated.metadata.address == expected

    @pytest.mark.asyncio
    async def test___aiter___with_missing_network(self, selector):
        """Test iterating a subscriber scoped to a network that does not exist.

        Given:
            A discovery scoped to a missing network.
        When:
            It is iterated.
        Then:
            It should raise NetworkNotFoundError.
        """
        # Arrange
        discovery = DockerDiscovery(network=f"missing-{_RUN}", labels=selector)

        # Act & assert
        with pytest.raises(NetworkNotFoundError):
            async with _subscription(discovery) as events:
                await _next(events, "never")

    @pytest.mark.asyncio
    async def test_subscriber_pickle_round_trip(self, network, selector, run):
        """Test that a pickled subscriber works after unpickling.

        Given:
            A subscriber pickled and unpickled.
        When:
            A worker container starts.
        Then:
            The copy should discover it.
        """
        # Arrange
        subscriber = pickle.loads(
            pickle.dumps(DockerDiscovery(network=network, labels=selector).subscriber)
        )
        events = aiter(subscriber)
        try:
            # Act
            container = run(network)
            added = await _next(events, "worker-added via the unpickled subscriber")
        finally:
            await events.aclose()

        # Assert
        assert added.metadata.uid == uuid.UUID(hex=container[:32])

    @pytest.mark.asyncio
    async def test_publish_with_worker_without_container(self, selector):
        """Test publishing a worker that has no labelled container.

        Given:
            Metadata of a worker no container carries.
        When:
            It is published as worker-added, and as worker-dropped.
        Then:
            worker-added should raise NotPublishedError; worker-dropped should
            return without error.
        """
        # Arrange
        from wool.runtime.worker.metadata import WorkerMetadata

        metadata = WorkerMetadata(
            uid=uuid.uuid4(), address="127.0.0.1:1", pid=1, version="0.15.7"
        )
        async with DockerDiscovery(labels=selector).publisher as publisher:
            # Act & assert
            with pytest.raises(NotPublishedError):
                await publisher.publish("worker-added", metadata)
            await publisher.publish("worker-dropped", metadata)

    @pytest.mark.asyncio
    async def test_subscriber_as_pool_discovery(self, network, selector, run):
        """Test an external pool over hand-run containers, subscriber only.

        Given:
            Two worker containers started with ``docker run``.
        When:
            A pool with ``discovery=DockerDiscovery(...).subscriber`` runs a
            routine many times.
        Then:
            It should compute results in both containers.
        """
        # Arrange
        from tests.integration import routines

        containers = {run(network)[:12], run(network)[:12]}
        discovery = DockerDiscovery(network=network, labels=selector)
        async with _subscription(discovery) as events:
            # Both serve before the pool starts, so its first view has both.
            for _ in containers:
                await _next(events, "worker-added for a hand-run container")

            # Act
            async with wool.WorkerPool(discovery=discovery.subscriber):
                async with asyncio.timeout(_TIMEOUT):
                    calls = (routines.hostname() for _ in range(20))
                    hosts = await asyncio.gather(*calls)

        # Assert
        assert set(hosts) == containers


class TestDockerDiscoveryInContainers:
    """Discovery used from inside `DockerWorker` containers (nested routines)."""

    @pytest.mark.asyncio
    async def test_subscriber_with_nested_routines(self, network, selector, image):
        """Test nested routines in a pool of DockerWorkers with DockerDiscovery.

        Given:
            A pool of two DockerWorkers discovered with DockerDiscovery, whose
            containers read the owner's worker feed (the default).
        When:
            A routine that awaits other routines runs (wool's README fib).
        Then:
            It should return the right value, which needs the subscriber to be
            unpickled and iterated inside the containers.
        """
        # Arrange
        from tests.integration import nested
        from wool_docker import DockerWorker

        discovery = DockerDiscovery(network=network, labels=selector)

        def factory(*tags, **kw):
            return DockerWorker(
                *tags,
                image=image,
                network=network,
                labels={**selector, RUN_LABEL: RUN_ID},
                log_output=False,
                **kw,
            )

        # Act
        async with wool.WorkerPool(spawn=2, worker=factory, discovery=discovery):
            async with asyncio.timeout(60):
                result = await nested.fib(7)

        # Assert
        assert result == 13
        assert not _docker("ps", "-aq", "--filter", f"label={_label(selector)}")


def _label(selector: dict[str, str]) -> str:
    key, value = next(iter(selector.items()))
    return f"{key}={value}"


class TestDockerDiscoveryIdentity:
    """Which containers a scope names, and which uid each worker gets."""

    @pytest.mark.asyncio
    async def test___aiter___with_two_containers_sharing_a_uid(
        self, network, selector, run
    ):
        """Test two live containers labelled with the same ``wool.uid``.

        Given:
            Two serving worker containers that both carry one ``wool.uid``
            (a Compose service with a fixed uid, scaled to 2)
        When:
            A subscriber discovers them
        Then:
            It should yield two workers with distinct uids, one of them the
            label's and the other derived from its container id, with one
            `MalformedLabelsWarning` naming both containers
        """
        # Arrange
        shared = uuid.uuid4()
        a = run(network, f"wool.uid={shared}")
        b = run(network, f"wool.uid={shared}")
        discovery = DockerDiscovery(network=network, labels=selector)

        # Act
        with pytest.warns(MalformedLabelsWarning, match="both carry wool.uid") as warned:
            async with _subscription(discovery) as events:
                found = [await _next(events, "worker-added") for _ in range(2)]

        # Assert
        uids = {event.metadata.uid for event in found}
        derived = {uuid.UUID(hex=a[:32]), uuid.UUID(hex=b[:32])}
        assert len(uids) == 2
        assert shared in uids
        assert (uids - {shared}) <= derived
        assert len([w for w in warned if "both carry" in str(w.message)]) == 1

    @pytest.mark.asyncio
    async def test___aiter___with_network_named_like_another_networks_id(
        self, network, selector, run
    ):
        """Test a scope whose name is also a prefix of another network's id.

        Given:
            The test's network X, a network Y named after the first 12 hex
            digits of X's id, and a worker container on each
        When:
            Discovery and ``list_workers`` are scoped to ``network=<Y>``
        Then:
            They should see only Y's container: a name is matched exactly,
            never as an id prefix
        """
        # Arrange
        from wool_docker import _native

        x_id = _docker("network", "inspect", "--format", "{{.Id}}", network)
        y = x_id[:12]
        _docker("network", "create", "--label", f"{RUN_LABEL}={RUN_ID}", y)
        on_y = None
        try:
            run(network)
            on_y = run(y)
            discovery = DockerDiscovery(network=y, labels=selector)

            # Act
            async with _subscription(discovery) as events:
                first = await _next(events, "worker-added for Y's container")
                try:
                    extra = await asyncio.wait_for(anext(events), 3.0)
                except TimeoutError:
                    extra = None
            listed = await _native.list_workers(selector, y)
        finally:
            if on_y is not None:
                _cli.remove_containers(on_y)
            _docker("network", "rm", y)

        # Assert
        assert first.metadata.uid == uuid.UUID(hex=on_y[:32])
        assert extra is None, f"also saw {extra.metadata.address}"
        assert [record["container_id"] for record, _ in listed] == [on_y]
