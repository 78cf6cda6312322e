"""Tests for `wool_docker.swarm.SwarmWorker`: its argument checks and the
configuration it hands the native core. Nothing here reaches an Engine."""

from __future__ import annotations

import pytest
import wool

from wool_docker import _native
from wool_docker import worker as worker_module
from wool_docker.swarm import SwarmWorker
from wool_docker.worker import DockerWorker

IMAGE = "wool-worker:test"
"""An image name; no test here pulls or inspects it."""

NETWORK = "wool-overlay"
"""A network name; no test here inspects it."""

PLACEMENT_KEYS = {
    "constraints",
    "reserve_cpus",
    "reserve_memory",
    "lifeline_host",
}
"""The keys of the ``"swarm"`` part of the native config."""


@pytest.fixture
def handle(mocker):
    """A stand-in for the native handle of a serving Swarm worker."""
    handle = mocker.NonCallableMock(spec=worker_module._native.WorkerHandle)
    handle.id = "0123456789abcdef"
    handle.name = "wool-worker-0123456789ab"
    handle.address = "10.0.1.5:50051"
    handle.pid = 7
    handle.version = "0.15.7"
    handle.node = "node2id"
    handle.stop = mocker.AsyncMock(return_value=None)
    return handle


@pytest.fixture
def start_worker(mocker, handle):
    """``_native.start_worker`` replaced by a stub returning `handle`."""
    return mocker.patch.object(
        worker_module._native,
        "start_worker",
        new=mocker.AsyncMock(return_value=handle),
    )


class TestSwarmWorker:
    """Tests for `wool_docker.swarm.SwarmWorker`."""

    def test___init___with_image_and_network(self):
        """Test constructing a Swarm worker from an image and a network.

        Given:
            An image and an overlay network's name
        When:
            `SwarmWorker` is constructed
        Then:
            It should be a `DockerWorker` and satisfy `wool.WorkerLike`
        """
        # Act
        worker = SwarmWorker(image=IMAGE, network=NETWORK)

        # Assert
        assert isinstance(worker, DockerWorker)
        assert isinstance(worker, wool.WorkerLike)

    @pytest.mark.parametrize("network", ["", None], ids=["empty", "none"])
    def test___init___without_network(self, network):
        """Test constructing a Swarm worker with no network to run on.

        Given:
            An empty or ``None`` network
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError` naming ``network=``
        """
        # Act & assert
        with pytest.raises(ValueError, match="network="):
            SwarmWorker(image=IMAGE, network=network)

    def test___init___without_network_keyword(self):
        """Test constructing a Swarm worker without naming a network at all.

        Given:
            Only an image
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `TypeError`: ``network`` is required
        """
        # Act & assert
        with pytest.raises(TypeError, match="network"):
            SwarmWorker(image=IMAGE)  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("engine_access", "socket"),
            ("security_opt", ("no-new-privileges:true",)),
            ("oom_score_adj", 500),
            ("oom_score_adj", 0),
            ("gpus", 1),
            ("gpus", "all"),
            ("runtime", "runsc"),
            ("publish", True),
        ],
    )
    def test___init___with_keyword_swarm_cannot_express(self, keyword, value):
        """Test constructing a Swarm worker with a setting services lack.

        Given:
            ``engine_access="socket"``, or one of ``security_opt``,
            ``oom_score_adj``, ``gpus``, ``runtime`` or ``publish=True``
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError` naming that keyword
        """
        # Act & assert
        with pytest.raises(ValueError, match=keyword):
            SwarmWorker(image=IMAGE, network=NETWORK, **{keyword: value})

    @pytest.mark.parametrize("pull", ["always", "never"])
    def test___init___with_pull_other_than_missing(self, pull):
        """Test constructing a Swarm worker with a pull policy of its own.

        Given:
            ``pull`` of ``"always"`` or ``"never"``
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError` saying the nodes pull what they lack
        """
        # Act & assert
        with pytest.raises(ValueError, match="pull='missing'"):
            SwarmWorker(image=IMAGE, network=NETWORK, pull=pull)

    def test___init___with_several_keywords_swarm_cannot_express(self):
        """Test that every refused keyword is named at once.

        Given:
            ``gpus``, ``runtime`` and ``security_opt`` together
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise one `ValueError` naming all three
        """
        # Act
        with pytest.raises(ValueError) as raised:
            SwarmWorker(
                image=IMAGE,
                network=NETWORK,
                gpus=1,
                runtime="runsc",
                security_opt=("seccomp=unconfined",),
            )

        # Assert
        message = str(raised.value)
        for keyword in ("gpus", "runtime", "security_opt"):
            assert keyword in message

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("engine_access", "none"),
            ("engine_access", "feed"),
            ("security_opt", ()),
            ("security_opt", []),
            ("oom_score_adj", None),
            ("gpus", None),
            ("runtime", None),
            ("publish", None),
            ("publish", False),
        ],
    )
    def test___init___with_keyword_at_its_swarm_value(self, keyword, value):
        """Test that a value Swarm can express is accepted.

        Given:
            A refused keyword at a value Swarm can express
            (``engine_access="none"`` or ``"feed"``, an empty ``security_opt``,
            or ``None``)
        When:
            `SwarmWorker` is constructed
        Then:
            It should not raise
        """
        # Act
        worker = SwarmWorker(image=IMAGE, network=NETWORK, **{keyword: value})

        # Assert
        assert worker.service is None

    @pytest.mark.parametrize("keyword", ["constraints"])
    def test___init___with_bare_string(self, keyword):
        """Test placement given as one string instead of a sequence.

        Given:
            ``constraints`` as a bare string (which would otherwise be split
            into characters)
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError` naming the keyword
        """
        # Act & assert
        with pytest.raises(ValueError, match=keyword):
            SwarmWorker(image=IMAGE, network=NETWORK, **{keyword: "node.role==worker"})

    @pytest.mark.parametrize("reserve_cpus", [0, -1.0, float("nan")])
    def test___init___with_non_positive_reserve_cpus(self, reserve_cpus):
        """Test reserving no CPU, or less than none.

        Given:
            A zero, negative or NaN ``reserve_cpus``
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError):
            SwarmWorker(image=IMAGE, network=NETWORK, reserve_cpus=reserve_cpus)

    @pytest.mark.parametrize("reserve_memory", [0, "lots", "-1g"])
    def test___init___with_bad_reserve_memory(self, reserve_memory):
        """Test reserving memory that is no size.

        Given:
            A zero, unparsable or negative ``reserve_memory``
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError):
            SwarmWorker(image=IMAGE, network=NETWORK, reserve_memory=reserve_memory)

    def test___init___with_docker_worker_check(self):
        """Test that `DockerWorker`'s own checks still apply.

        Given:
            A blank image
        When:
            `SwarmWorker` is constructed
        Then:
            It should raise `DockerWorker`'s `ValueError` about the image
        """
        # Act & assert
        with pytest.raises(ValueError, match="image"):
            SwarmWorker(image=" ", network=NETWORK)

    def test_service_and_node_before_start(self):
        """Test a Swarm worker's service and node before it has either.

        Given:
            A Swarm worker that was never started
        When:
            ``service`` and ``node`` are read
        Then:
            Both should be ``None``
        """
        # Arrange
        worker = SwarmWorker(image=IMAGE, network=NETWORK)

        # Act
        service, node = worker.service, worker.node

        # Assert
        assert service is None
        assert node is None

    def test__config_with_defaults(self):
        """Test the native config of a Swarm worker with default placement.

        Given:
            A Swarm worker from an image and a network alone
        When:
            ``_config(None)`` is built
        Then:
            It should be `DockerWorker`'s config (engine access ``"none"``, no
            ``security_opt``, no OOM score adjustment) plus a ``"swarm"``
            part with empty constraints and no reservations or
            lifeline host, and the native schema should accept it
        """
        # Arrange
        worker = SwarmWorker(image=IMAGE, network=NETWORK)

        # Act
        config = _native.check_worker_config(worker._config(None))

        # Assert
        assert config["swarm"] == {
            "constraints": [],
            "reserve_cpus": None,
            "reserve_memory": None,
            "lifeline_host": None,
        }
        assert config["image"] == IMAGE
        assert config["network"] == NETWORK
        assert config["publication"]["network"] == NETWORK
        assert config["name"] == f"wool-worker-{worker.uid.hex[:12]}"
        assert config["engine_access"] == "feed"
        assert config["sandbox"]["security_opt"] == []
        assert config["sandbox"]["oom_score_adj"] is None
        assert config["sandbox"]["runtime"] is None
        assert config["gpus"] is None

    def test__config_with_placement(self):
        """Test the native config of a Swarm worker with every placement keyword.

        Given:
            Constraints, CPU and memory reservations and a
            lifeline host
        When:
            ``_config(None)`` is built
        Then:
            The native schema should accept it, its ``"swarm"`` part holding
            them as lists, CPUs and bytes
        """
        # Arrange
        worker = SwarmWorker(
            image=IMAGE,
            network=NETWORK,
            constraints=("node.role==worker", "node.labels.gpu==true"),
            reserve_cpus=0.25,
            reserve_memory="64m",
            lifeline_host="10.0.1.2",
        )

        # Act
        config = _native.check_worker_config(worker._config(None))

        # Assert
        assert config["swarm"] == {
            "constraints": ["node.role==worker", "node.labels.gpu==true"],
            "reserve_cpus": 0.25,
            "reserve_memory": 64 * 1024**2,
            "lifeline_host": "10.0.1.2",
        }

    def test__config_holds_docker_worker_config(self):
        """Test that a Swarm worker's config is a `DockerWorker`'s plus placement.

        Given:
            A `SwarmWorker` and a `DockerWorker` with the same keywords (those
            Swarm can express, and ``security_opt=()``,
            ``oom_score_adj=None``)
        When:
            Both ``_config(None)`` are built
        Then:
            They should differ only in the worker's name and uid and in the
            ``"swarm"`` key, ``None`` for the `DockerWorker`
        """
        # Arrange
        keywords = dict(
            image=IMAGE,
            network=NETWORK,
            labels={"team": "a"},
            environment={"A": "1"},
            cpus=1.5,
            mem_limit="1g",
            tmpfs={"/cache": "size=64m"},
        )
        swarm = SwarmWorker("t", **keywords)
        docker = DockerWorker("t", security_opt=(), oom_score_adj=None, **keywords)

        # Act
        swarm_config = _without_identity(swarm._config(None))
        docker_config = _without_identity(docker._config(None))

        # Assert
        assert docker_config.pop("swarm") is None
        assert swarm_config.pop("swarm") is not None
        assert swarm_config == docker_config
        assert set(swarm._config(None)["swarm"]) == PLACEMENT_KEYS

    @pytest.mark.parametrize(
        ("key", "value"),
        [("contraints", []), ("replicas", 2), ("spread", ["node.labels.zone"])],
    )
    def test__config_with_unknown_swarm_key(self, key, value):
        """Test that the native schema refuses a misspelt placement key.

        Given:
            A Swarm worker's config with an unknown key added to ``"swarm"``
        When:
            `check_worker_config` is called
        Then:
            It should raise `ValueError` naming the unknown key
        """
        # Arrange
        config = SwarmWorker(image=IMAGE, network=NETWORK)._config(None)
        config["swarm"][key] = value

        # Act & assert
        with pytest.raises(ValueError, match=f"unknown field `{key}`"):
            _native.check_worker_config(config)

    @pytest.mark.asyncio
    async def test_start_with_placement(self, start_worker):
        """Test what a Swarm worker's start hands the native core.

        Given:
            A Swarm worker with a constraint and a stubbed native start
        When:
            It is started
        Then:
            The native core should receive the config with its ``"swarm"``
            part, which the native schema accepts
        """
        # Arrange
        worker = SwarmWorker(
            image=IMAGE, network=NETWORK, constraints=["node.role==worker"]
        )

        # Act
        await worker.start()

        # Assert
        config = start_worker.await_args.args[0]
        _native.check_worker_config(config)
        assert config["swarm"]["constraints"] == ["node.role==worker"]
        assert config["engine_access"] == "feed"

    @pytest.mark.asyncio
    async def test_service_and_node_after_start(self, start_worker, handle):
        """Test a started Swarm worker's service and node.

        Given:
            A Swarm worker whose stubbed native start returns a handle placed
            on a node
        When:
            It is started
        Then:
            ``service`` should be the handle's name, ``node`` its node, and
            ``address`` the task's address on the overlay
        """
        # Arrange
        worker = SwarmWorker(image=IMAGE, network=NETWORK)

        # Act
        await worker.start()

        # Assert
        assert worker.service == handle.name
        assert worker.node == "node2id"
        assert worker.address == "10.0.1.5:50051"

    @pytest.mark.asyncio
    async def test_service_and_node_after_stop(self, start_worker, handle):
        """Test that a stopped Swarm worker has neither service nor node.

        Given:
            A started Swarm worker
        When:
            It is stopped
        Then:
            Its handle should have been stopped, and ``service`` and ``node``
            should be ``None``
        """
        # Arrange
        worker = SwarmWorker(image=IMAGE, network=NETWORK)
        await worker.start()

        # Act
        await worker.stop()

        # Assert
        handle.stop.assert_awaited_once()
        assert worker.service is None
        assert worker.node is None


def _without_identity(config: dict) -> dict:
    """A worker config less what differs between any two workers."""
    config = dict(config, publication=dict(config["publication"]))
    del config["name"], config["publication"]["uid"]
    return config
