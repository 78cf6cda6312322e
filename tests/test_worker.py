"""Tests for `wool_docker.worker`, without a Docker Engine.

The native core is stubbed only to check what `DockerWorker` hands it and what
it makes of the handle it gets back; the container lifecycle itself is tested
against the real daemon in ``tests/integration/test_worker.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid

import grpc
import pytest
import wool
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from wool import protocol
from wool.runtime.worker.auth import WorkerCredentials
from wool.runtime.worker.base import ChannelOptions

from wool_docker import _logging
from wool_docker import worker as worker_module
from wool_docker._convert import channel_options
from wool_docker.worker import DockerWorker

IMAGE = "wool-worker:test"
"""An image name; no test here pulls or inspects it."""

CREDENTIALS = WorkerCredentials(
    ca_cert=b"-----CA-----", worker_key=b"-----KEY-----", worker_cert=b"-----CERT-----"
)
"""Placeholder TLS material; nothing here handshakes with it."""


@pytest.fixture
def handle(mocker):
    """A stand-in for the native handle of a serving worker container."""
    handle = mocker.NonCallableMock(spec=worker_module._native.WorkerHandle)
    handle.id = "0123456789abcdef"
    handle.name = "wool-worker-0123456789ab"
    handle.address = "172.18.0.5:50051"
    handle.pid = 7
    handle.version = "0.15.7"
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


def _config(start_worker) -> dict:
    """The container config of the last ``start_worker`` call as the real
    native schema reads it: what the stub received, the native core accepts,
    with each value in its canonical form (sizes in bytes, binds as
    ``src:dst:mode``, limits as pairs)."""
    config = start_worker.await_args.args[0]
    return worker_module._native.check_worker_config(config)


def _without_identity(config: dict) -> dict:
    """A container config less what differs between any two workers."""
    config = dict(config, publication=dict(config["publication"]))
    del config["name"], config["publication"]["uid"]
    return config


class TestDockerWorker:
    """Tests for `wool_docker.worker.DockerWorker`."""

    def test___init___with_image_only(self):
        """Test constructing a worker from an image alone.

        Given:
            Only an image name
        When:
            `DockerWorker` is constructed
        Then:
            It should satisfy `wool.WorkerLike`
        """
        # Act
        worker = DockerWorker(image=IMAGE)

        # Assert
        assert isinstance(worker, wool.WorkerLike)

    @pytest.mark.parametrize("image", ["", "   "], ids=["empty", "blank"])
    def test___init___with_empty_image(self, image):
        """Test constructing a worker without an image.

        Given:
            An empty or blank image name
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="image"):
            DockerWorker(image=image)

    def test___init___with_comma_in_tag(self):
        """Test constructing a worker with a tag labels cannot carry.

        Given:
            A tag containing a comma
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="comma"):
            DockerWorker("gpu,fast", image=IMAGE)

    @pytest.mark.parametrize("port", [0, -1, 65536])
    def test___init___with_port_out_of_range(self, port):
        """Test constructing a worker with an impossible port.

        Given:
            A port outside 1-65535
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="port"):
            DockerWorker(image=IMAGE, port=port)

    @pytest.mark.parametrize(
        "name_prefix",
        ["", "-worker", ".worker", "my worker", "team/worker", "wörker"],
    )
    def test___init___with_invalid_name_prefix(self, name_prefix):
        """Test constructing a worker whose container name Docker would refuse.

        Given:
            A name prefix that is not a valid container name
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="name_prefix"):
            DockerWorker(image=IMAGE, name_prefix=name_prefix)

    @pytest.mark.parametrize("start_timeout", [0, -1.0])
    def test___init___with_non_positive_start_timeout(self, start_timeout):
        """Test constructing a worker with a start timeout that cannot elapse.

        Given:
            A zero or negative ``start_timeout``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="start_timeout"):
            DockerWorker(image=IMAGE, start_timeout=start_timeout)

    @pytest.mark.parametrize("shutdown_grace_period", [0, -1.0])
    def test___init___with_non_positive_shutdown_grace_period(
        self, shutdown_grace_period
    ):
        """Test constructing a worker with a grace period that cannot elapse.

        Given:
            A zero or negative ``shutdown_grace_period``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="shutdown_grace_period"):
            DockerWorker(image=IMAGE, shutdown_grace_period=shutdown_grace_period)

    @pytest.mark.parametrize("cpus", [0, 0.0, -0.5])
    def test___init___with_non_positive_cpus(self, cpus):
        """Test constructing a worker with no CPU to run on.

        Given:
            A zero or negative ``cpus``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="cpus"):
            DockerWorker(image=IMAGE, cpus=cpus)

    @pytest.mark.parametrize("engine_access", ["full", "", "Proxy", None])
    def test___init___with_unknown_engine_access(self, engine_access):
        """Test constructing a worker with an unknown Engine access mode.

        Given:
            An ``engine_access`` other than ``"feed"``, ``"socket"``,
            ``"none"`` or ``"proxy"``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="engine_access"):
            DockerWorker(image=IMAGE, engine_access=engine_access)

    @pytest.mark.parametrize("pull", ["missing", "always", "never"])
    def test___init___with_pull_policy(self, pull):
        """Test constructing a worker with each pull policy.

        Given:
            ``pull`` of ``"missing"``, ``"always"`` or ``"never"``
        When:
            `DockerWorker` is constructed
        Then:
            It should pass the policy to the native core as given
        """
        # Act
        worker = DockerWorker(image=IMAGE, pull=pull)

        # Assert
        assert worker._config(None)["pull"] == pull

    def test___init___with_default_pull_policy(self):
        """Test the default pull policy.

        Given:
            No ``pull``
        When:
            `DockerWorker` is constructed
        Then:
            It should pull only a missing image
        """
        # Act
        worker = DockerWorker(image=IMAGE)

        # Assert
        assert worker._config(None)["pull"] == "missing"

    @pytest.mark.parametrize("pull", ["sometimes", "", True, None])
    def test___init___with_unknown_pull_policy(self, pull):
        """Test constructing a worker with an unknown pull policy.

        Given:
            A ``pull`` other than ``"missing"``, ``"always"`` or ``"never"``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError` naming ``pull``
        """
        # Act & assert
        with pytest.raises(ValueError, match="pull"):
            DockerWorker(image=IMAGE, pull=pull)

    def test___init___with_engine_access_proxy(self):
        """Test the first version's name for the worker feed.

        Given:
            ``engine_access="proxy"``
        When:
            `DockerWorker` is constructed
        Then:
            It should warn with `DeprecationWarning` and use the feed
        """
        # Act
        with pytest.warns(DeprecationWarning, match="feed"):
            worker = DockerWorker(image=IMAGE, engine_access="proxy")

        # Assert
        assert worker._config(None)["engine_access"] == "feed"

    def test___init___with_identity_without_credentials(self):
        """Test constructing a worker that claims an identity it cannot prove.

        Given:
            An ``identity`` and no ``credentials``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="identity requires credentials"):
            DockerWorker(image=IMAGE, identity="worker.wool.test")

    def test___init___with_blank_identity_without_credentials(self):
        """Test constructing a worker with a blank identity and no credentials.

        Given:
            A whitespace-only ``identity`` and no ``credentials``
        When:
            `DockerWorker` is constructed
        Then:
            It should accept it as no identity
        """
        # Act
        worker = DockerWorker(image=IMAGE, identity="   ")

        # Assert
        assert isinstance(worker, DockerWorker)

    @pytest.mark.parametrize("value", [42, 1.5, True, None, ["a"], {"a": "b"}], ids=repr)
    def test___init___with_non_string_extra(self, value):
        """Test constructing a worker with extra metadata wool cannot carry.

        Given:
            An extra keyword whose value is not a string
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="strings to strings"):
            DockerWorker(image=IMAGE, answer=value)

    @pytest.mark.parametrize(
        "mem_limit",
        ["", "lots", "1.5g", "512t", "512mb", "-1m", "m", "1 2m"],
    )
    def test___init___with_malformed_mem_limit(self, mem_limit):
        """Test constructing a worker with an unreadable memory limit.

        Given:
            A ``mem_limit`` string that is not digits with an optional
            ``b``/``k``/``m``/``g`` suffix
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="mem_limit"):
            DockerWorker(image=IMAGE, mem_limit=mem_limit)

    @pytest.mark.parametrize("mem_limit", [0, -1, "0", "0g"])
    def test___init___with_non_positive_mem_limit(self, mem_limit):
        """Test constructing a worker with no memory.

        Given:
            A ``mem_limit`` of zero bytes or less
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="mem_limit: must be positive"):
            DockerWorker(image=IMAGE, mem_limit=mem_limit)

    @pytest.mark.parametrize("gpus", [0, -1, "2", "any", "ALL", 1.5])
    def test___init___with_invalid_gpus(self, gpus):
        """Test constructing a worker with an unreadable GPU request.

        Given:
            A ``gpus`` that is neither a positive int nor ``"all"``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="gpus"):
            DockerWorker(image=IMAGE, gpus=gpus)

    def test___init___with_volumes_as_string(self):
        """Test constructing a worker with a single bind string as volumes.

        Given:
            ``volumes`` given as one ``"src:dst"`` string instead of a list
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="volumes"):
            DockerWorker(image=IMAGE, volumes="/src:/dst")

    def test___init___with_volume_mapping_without_bind(self):
        """Test constructing a worker with a volume that has no destination.

        Given:
            A docker-py volume mapping whose spec lacks ``bind``
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="bind"):
            DockerWorker(image=IMAGE, volumes={"/src": {"mode": "ro"}})

    def test___init___with_host(self):
        """Test constructing a worker with the host a pool prescribes.

        Given:
            ``host="127.0.0.1"``, as `WorkerPool` passes from its publisher
        When:
            `DockerWorker` is constructed
        Then:
            It should keep the host out of the extra metadata it publishes
        """
        # Act
        worker = DockerWorker(image=IMAGE, host="127.0.0.1")

        # Assert
        # A host taken as extra metadata would be published in the labels and
        # advertised to every client as the worker's own.
        assert worker.extra == {}

    def test_uid_with_two_workers(self):
        """Test that workers get distinct identifiers.

        Given:
            Two workers constructed alike
        When:
            Their ``uid`` is read
        Then:
            It should be a distinct `uuid.UUID` for each
        """
        # Arrange
        first = DockerWorker(image=IMAGE)
        second = DockerWorker(image=IMAGE)

        # Act
        uids = {first.uid, second.uid}

        # Assert
        assert len(uids) == 2
        assert all(isinstance(uid, uuid.UUID) for uid in uids)

    def test_tags_with_positional_tags(self):
        """Test a worker's capability tags.

        Given:
            A worker constructed with tags ``"gpu"`` and ``"fast"``
        When:
            ``tags`` is read
        Then:
            It should return those tags
        """
        # Arrange
        worker = DockerWorker("gpu", "fast", image=IMAGE)

        # Act
        tags = worker.tags

        # Assert
        assert tags == {"gpu", "fast"}

    def test_extra_with_keyword_metadata(self):
        """Test a worker's extra metadata.

        Given:
            A worker constructed with ``region="eu"``
        When:
            ``extra`` is read
        Then:
            It should return ``{"region": "eu"}``
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, region="eu")

        # Act
        extra = worker.extra

        # Assert
        assert extra == {"region": "eu"}

    def test_metadata_before_start(self):
        """Test a worker's metadata before it has a container.

        Given:
            A worker that was never started
        When:
            ``metadata`` is read
        Then:
            It should return ``None``
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        metadata = worker.metadata

        # Assert
        assert metadata is None

    def test_address_before_start(self):
        """Test a worker's address before it has a container.

        Given:
            A worker that was never started
        When:
            ``address`` is read
        Then:
            It should return ``None``
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        address = worker.address

        # Assert
        assert address is None

    def test_container_before_start(self):
        """Test a worker's container name before it has a container.

        Given:
            A worker that was never started
        When:
            ``container`` is read
        Then:
            It should return ``None``
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        container = worker.container

        # Assert
        assert container is None

    @pytest.mark.asyncio
    async def test_start_with_default_arguments(self, start_worker):
        """Test the container config of a worker with default arguments.

        Given:
            A worker constructed from an image alone
        When:
            It is started
        Then:
            It should ask for that image, named ``wool-worker-`` plus the first
            12 hex digits of its uid, on the default network, with the
            ``wool.worker=true`` selector, no limits, no TLS, proxied Engine
            access, a 60 s shutdown grace, and this interpreter's Python and
            wool versions
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start()

        # Assert
        config = _config(start_worker)
        assert config["image"] == IMAGE
        assert config["name"] == f"wool-worker-{worker.uid.hex[:12]}"
        assert config["network"] is None
        assert config["selector"] == {"wool.worker": "true"}
        assert config["labels"] == {}
        assert config["environment"] == {}
        assert config["volumes"] == []
        assert config["cpus"] is None
        assert config["mem_limit"] is None
        assert config["gpus"] is None
        assert config["tls"] is None
        assert config["engine_access"] == "feed"
        assert config["shutdown_grace_period"] == 60.0
        assert config["python"] == "{}.{}".format(*sys.version_info[:2])
        assert config["wool_version"] == protocol.__version__

    @pytest.mark.asyncio
    async def test_start_with_default_arguments_publication(self, start_worker):
        """Test the published record of a worker with default arguments.

        Given:
            A worker constructed from an image alone
        When:
            It is started
        Then:
            It should publish its uid, port 50051, no tags, empty extra,
            insecure, no identity, default channel options and no network
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start()

        # Assert
        publication = _config(start_worker)["publication"]
        assert publication["uid"] == str(worker.uid)
        assert publication["port"] == 50051
        assert publication["tags"] == []
        assert publication["extra"] == {}
        assert publication["secure"] is False
        assert publication["identity"] is None
        assert channel_options(publication["options"]) == ChannelOptions()
        assert publication["network"] is None
        assert publication["publish"] is None

    @pytest.mark.asyncio
    @pytest.mark.parametrize("publish", [True, False])
    async def test_start_with_publish(self, start_worker, publish):
        """Test a worker told how it is reached.

        Given:
            A worker with ``publish`` True or False
        When:
            It is started
        Then:
            Its config should carry the choice for the core to keep
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, publish=publish)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["publication"]["publish"] is publish

    @pytest.mark.parametrize("publish", [1, "yes", "auto"])
    def test___init___with_publish_not_a_bool(self, publish):
        """Test ``publish`` given as something Python would take for a bool.

        Given:
            ``publish`` as 1, "yes" or "auto"
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError` naming the keyword
        """
        # Act & assert
        with pytest.raises(ValueError, match="publish"):
            DockerWorker(image=IMAGE, publish=publish)

    @pytest.mark.asyncio
    async def test_start_with_name_prefix(self, start_worker):
        """Test the container name of a worker with a name prefix.

        Given:
            A worker with ``name_prefix="batch"``
        When:
            It is started
        Then:
            It should name the container ``batch-`` plus the first 12 hex
            digits of its uid
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, name_prefix="batch")

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["name"] == f"batch-{worker.uid.hex[:12]}"

    @pytest.mark.asyncio
    async def test_start_with_network(self, start_worker):
        """Test the network of a worker on a user-defined network.

        Given:
            A worker with ``network="wool"``
        When:
            It is started
        Then:
            It should attach the container to ``wool`` and publish that network
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, network="wool")

        # Act
        await worker.start()

        # Assert
        config = _config(start_worker)
        assert config["network"] == "wool"
        assert config["publication"]["network"] == "wool"

    @pytest.mark.asyncio
    async def test_start_with_tags_and_extra(self, start_worker):
        """Test the published tags and extra metadata.

        Given:
            A worker with tags ``"beta"`` and ``"alpha"`` and extra
            ``region="eu"``
        When:
            It is started
        Then:
            It should publish the tags sorted and the extra metadata as JSON
        """
        # Arrange
        worker = DockerWorker("beta", "alpha", image=IMAGE, region="eu")

        # Act
        await worker.start()

        # Assert
        publication = _config(start_worker)["publication"]
        assert publication["tags"] == ["alpha", "beta"]
        assert publication["extra"] == {"region": "eu"}

    @pytest.mark.asyncio
    async def test_start_with_port(self, start_worker):
        """Test the published port of a worker on a custom port.

        Given:
            A worker with ``port=6000``
        When:
            It is started
        Then:
            It should publish port 6000
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, port=6000)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["publication"]["port"] == 6000

    @pytest.mark.asyncio
    async def test_start_with_options(self, start_worker):
        """Test the published channel options.

        Given:
            A worker with custom `ChannelOptions`
        When:
            It is started
        Then:
            It should publish options that parse back equal to them
        """
        # Arrange
        options = ChannelOptions(
            max_concurrent_streams=10, compression=grpc.Compression.Gzip
        )
        worker = DockerWorker(image=IMAGE, options=options)

        # Act
        await worker.start()

        # Assert
        published = _config(start_worker)["publication"]["options"]
        assert channel_options(published) == options

    @pytest.mark.asyncio
    async def test_start_with_labels(self, start_worker):
        """Test extra container labels.

        Given:
            A worker with ``labels={"team": "ml", "tier": "batch"}``
        When:
            It is started
        Then:
            It should pass those labels through
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, labels={"team": "ml", "tier": "batch"})

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["labels"] == {"team": "ml", "tier": "batch"}

    @pytest.mark.asyncio
    async def test_start_with_environment(self, start_worker):
        """Test extra environment variables.

        Given:
            A worker with an environment of a string and an int value
        When:
            It is started
        Then:
            It should pass the variables through with string values
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, environment={"MODE": "fast", "SEED": 7})

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["environment"] == {"MODE": "fast", "SEED": "7"}

    @pytest.mark.asyncio
    async def test_start_with_volume_mapping(self, start_worker):
        """Test docker-py style volumes.

        Given:
            A volumes mapping, one with ``mode="ro"`` and one without a mode
        When:
            It is started
        Then:
            It should pass ``src:dst:mode`` binds, defaulting the mode to ``rw``
        """
        # Arrange
        worker = DockerWorker(
            image=IMAGE,
            volumes={
                "/srv/data": {"bind": "/data", "mode": "ro"},
                "cache": {"bind": "/cache"},
            },
        )

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["volumes"] == [
            "/srv/data:/data:ro",
            "cache:/cache:rw",
        ]

    @pytest.mark.asyncio
    async def test_start_with_volume_list(self, start_worker):
        """Test volumes given as bind strings.

        Given:
            A list of ``src:dst[:mode]`` strings
        When:
            It is started
        Then:
            It should pass them through unchanged
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, volumes=["/srv/data:/data:ro", "cache:/c"])

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["volumes"] == ["/srv/data:/data:ro", "cache:/c"]

    @pytest.mark.asyncio
    async def test_start_with_fractional_cpus(self, start_worker):
        """Test a CPU limit like ``docker run --cpus 1.5``.

        Given:
            A worker with ``cpus=1.5``
        When:
            It is started
        Then:
            It should ask for 1.5 CPUs (the core holds 1,500,000,000 nano-CPUs)
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, cpus=1.5)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["cpus"] == 1.5

    @pytest.mark.asyncio
    async def test_start_with_two_decimal_cpus(self, start_worker):
        """Test a CPU limit whose binary float lies below its decimal value.

        Given:
            A worker with ``cpus=2.01``
        When:
            It is started
        Then:
            It should ask for 2.01 CPUs; the core rounds them to 2,010,000,000
            nano-CPUs as ``docker run --cpus`` does (a Rust unit test of
            ``values::NanoCpus``)
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, cpus=2.01)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["cpus"] == 2.01

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("mem_limit", "memory"),
        [
            ("512m", 512 * 1024**2),
            ("2g", 2 * 1024**3),
            ("64K", 64 * 1024),
            ("100b", 100),
            ("1024", 1024),
            (" 8 M ", 8 * 1024**2),
            (4096, 4096),
        ],
    )
    async def test_start_with_mem_limit(self, start_worker, mem_limit, memory):
        """Test a memory limit in docker-py's notation.

        Given:
            A ``mem_limit`` in bytes or with a ``b``/``k``/``m``/``g`` suffix
        When:
            It is started
        Then:
            It should ask for that many bytes
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, mem_limit=mem_limit)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["mem_limit"] == memory

    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        count=st.integers(min_value=1, max_value=2**20),
        unit=st.sampled_from(
            [("", 1), ("b", 1), ("k", 1024), ("m", 1024**2), ("g", 1024**3)]
        ),
        upper=st.booleans(),
    )
    @pytest.mark.asyncio
    async def test_start_with_arbitrary_mem_limit(
        self, start_worker, count, unit, upper
    ):
        """Test that any suffixed memory limit converts to bytes.

        Given:
            Any positive count with any docker-py suffix, in either case
        When:
            A worker with that ``mem_limit`` is started
        Then:
            It should ask for the count times the suffix's multiplier
        """
        # Arrange
        suffix, multiplier = unit
        mem_limit = f"{count}{suffix.upper() if upper else suffix}"
        worker = DockerWorker(image=IMAGE, mem_limit=mem_limit)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["mem_limit"] == count * multiplier

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("gpus", "requested"), [("all", "all"), (1, 1), (4, 4)])
    async def test_start_with_gpus(self, start_worker, gpus, requested):
        """Test a GPU request.

        Given:
            ``gpus="all"`` or a positive count
        When:
            It is started
        Then:
            It should ask for every GPU (Docker's -1, in the core) or that count
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, gpus=gpus)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["gpus"] == requested

    @pytest.mark.asyncio
    @pytest.mark.parametrize("engine_access", ["feed", "socket", "none"])
    async def test_start_with_engine_access(self, start_worker, engine_access):
        """Test how the container reaches the Engine.

        Given:
            Each ``engine_access`` mode
        When:
            The worker is started
        Then:
            It should pass that mode through
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, engine_access=engine_access)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["engine_access"] == engine_access

    @pytest.mark.asyncio
    async def test_start_with_shutdown_grace_period(self, start_worker):
        """Test the server's own drain bound.

        Given:
            A worker with ``shutdown_grace_period=5``
        When:
            It is started
        Then:
            It should pass a shutdown grace of 5 seconds
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, shutdown_grace_period=5)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["shutdown_grace_period"] == 5

    @pytest.mark.asyncio
    async def test_start_with_credentials_and_identity(self, start_worker):
        """Test a TLS worker that advertises an identity.

        Given:
            A worker with one-way TLS `WorkerCredentials` and an identity
        When:
            It is started
        Then:
            It should pass the PEM material as text with ``mutual`` false, and
            publish the worker as secure with that identity
        """
        # Arrange
        credentials = WorkerCredentials(
            ca_cert=b"-----CA-----",
            worker_key=b"-----KEY-----",
            worker_cert=b"-----CERT-----",
            mutual=False,
        )
        worker = DockerWorker(
            image=IMAGE, credentials=credentials, identity="worker.wool.test"
        )

        # Act
        await worker.start()

        # Assert
        assert start_worker.await_args.args[0]["tls"] == {
            "ca": "-----CA-----",
            "cert": "-----CERT-----",
            "key": "-----KEY-----",
            "mutual": False,
        }
        # The canonical form never shows the PEM text.
        config = _config(start_worker)
        assert config["tls"] == {"mutual": False}
        assert config["publication"]["secure"] is True
        assert config["publication"]["identity"] == "worker.wool.test"

    @pytest.mark.asyncio
    async def test_start_with_host(self, start_worker, handle):
        """Test that the pool's bind host does not reach the container.

        Given:
            A worker constructed with ``host="127.0.0.1"``
        When:
            It is started
        Then:
            It should start the container exactly as without a host, and
            publish the container's address
        """
        # Arrange
        plain = DockerWorker(image=IMAGE)
        await plain.start()
        expected = _config(start_worker)
        worker = DockerWorker(image=IMAGE, host="127.0.0.1")

        # Act
        await worker.start()

        # Assert
        # A container cannot serve the pool's loopback host: it must change
        # nothing but the per-worker name and uid.
        assert _without_identity(_config(start_worker)) == _without_identity(expected)
        assert worker.address == handle.address

    @pytest.mark.asyncio
    async def test_start_without_timeout(self, start_worker):
        """Test the start deadline when the pool gives none.

        Given:
            A worker with ``start_timeout=12``
        When:
            It is started without a timeout
        Then:
            It should leave the deadline to the config's 12 seconds
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, start_timeout=12)

        # Act
        await worker.start()

        # Assert
        assert start_worker.await_args.args[1] is None
        assert _config(start_worker)["start_timeout"] == 12

    @pytest.mark.asyncio
    async def test_start_with_timeout(self, start_worker):
        """Test the start deadline when the pool gives one.

        Given:
            A worker with the default ``start_timeout``
        When:
            It is started with ``timeout=3``
        Then:
            It should wait up to 3 seconds
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start(timeout=3)

        # Assert
        assert start_worker.await_args.args[1] == 3

    @pytest.mark.asyncio
    async def test_start_with_docker_host(self, start_worker):
        """Test the Engine address.

        Given:
            A worker with ``docker_host="tcp://127.0.0.1:2375"``
        When:
            It is started
        Then:
            It should pass that address to the native core
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, docker_host="tcp://127.0.0.1:2375")

        # Act
        await worker.start()

        # Assert
        assert start_worker.await_args.args[3] == "tcp://127.0.0.1:2375"

    @pytest.mark.asyncio
    async def test_start_without_log_output(self, start_worker):
        """Test a worker whose output is not forwarded.

        Given:
            A worker with ``log_output=False``
        When:
            It is started
        Then:
            It should ask the native core not to forward its output
        """
        # Arrange
        worker = DockerWorker(image=IMAGE, log_output=False)

        # Act
        await worker.start()

        # Assert
        assert start_worker.await_args.args[2] is False

    @pytest.mark.asyncio
    async def test_start_with_log_output(self, start_worker):
        """Test forwarding the container's output by default.

        Given:
            A worker with the default ``log_output``
        When:
            It is started
        Then:
            It should ask the native core to forward its output
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start()

        # Assert
        assert start_worker.await_args.args[2] is True

    def test_emit_container_line(self, caplog):
        """Test how a batch of native log records enters Python logging.

        Given:
            A native batch with one line of container output and one
            diagnostic of the core
        When:
            It is emitted
        Then:
            It should log the line at INFO on ``wool_docker.worker`` with the
            container's name and stream as record attributes, and the
            diagnostic at its level on its logger
        """
        # Arrange
        batch = [
            ("wool_docker.worker", logging.INFO, "[w-1] serving", ("w-1", True)),
            ("wool_docker.discovery", logging.WARNING, "stream broke", None),
        ]

        # Act
        with caplog.at_level(logging.INFO, logger="wool_docker"):
            _logging.emit(batch)

        # Assert
        assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
            ("wool_docker.worker", logging.INFO, "[w-1] serving"),
            ("wool_docker.discovery", logging.WARNING, "stream broke"),
        ]
        assert (caplog.records[0].container, caplog.records[0].stderr) == ("w-1", True)

    @pytest.mark.asyncio
    async def test_start_with_serving_container(self, start_worker, handle):
        """Test the metadata of a started worker.

        Given:
            A worker with tags and extra metadata whose container serves
        When:
            It is started
        Then:
            It should report metadata with the handle's address, pid and
            version and its own uid, tags, extra and options
        """
        # Arrange
        options = ChannelOptions(max_concurrent_streams=10)
        worker = DockerWorker("gpu", image=IMAGE, options=options, region="eu")

        # Act
        await worker.start()

        # Assert
        metadata = worker.metadata
        assert metadata.uid == worker.uid
        assert metadata.address == "172.18.0.5:50051"
        assert metadata.pid == 7
        assert metadata.version == "0.15.7"
        assert metadata.tags == frozenset({"gpu"})
        assert dict(metadata.extra) == {"region": "eu"}
        assert metadata.secure is False
        assert metadata.options == options
        assert metadata.identity is None

    @pytest.mark.asyncio
    async def test_start_with_unversioned_container(self, start_worker, handle):
        """Test the metadata of a container that reports no wool version.

        Given:
            A container whose handle has an empty version
        When:
            The worker is started
        Then:
            It should report this process's wool version
        """
        # Arrange
        handle.version = ""
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start()

        # Assert
        assert worker.metadata.version == protocol.__version__

    @pytest.mark.asyncio
    async def test_start_with_credentials(self, start_worker):
        """Test the metadata of a started TLS worker.

        Given:
            A worker with credentials and an identity
        When:
            It is started
        Then:
            It should report itself secure with that identity
        """
        # Arrange
        worker = DockerWorker(
            image=IMAGE, credentials=CREDENTIALS, identity="worker.wool.test"
        )

        # Act
        await worker.start()

        # Assert
        assert worker.metadata.secure is True
        assert worker.metadata.identity == "worker.wool.test"

    @pytest.mark.asyncio
    async def test_address_after_start(self, start_worker, handle):
        """Test a started worker's address.

        Given:
            A started worker
        When:
            ``address`` is read
        Then:
            It should return the handle's address
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)
        await worker.start()

        # Act
        address = worker.address

        # Assert
        assert address == handle.address

    @pytest.mark.asyncio
    async def test_container_after_start(self, start_worker, handle):
        """Test a started worker's container name.

        Given:
            A started worker
        When:
            ``container`` is read
        Then:
            It should return the handle's name
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)
        await worker.start()

        # Act
        container = worker.container

        # Assert
        assert container == handle.name

    @pytest.mark.asyncio
    @pytest.mark.parametrize("grace", [None, 5.0, -1.0])
    async def test_stop_with_grace(self, mocker, start_worker, handle, grace):
        """Test the drain a stop asks for.

        Given:
            A started worker
        When:
            It is stopped with no grace, a positive grace or a negative grace
        Then:
            It should return only after the handle's stop with that grace has
            finished, and release the container
        """
        # Arrange
        finished = []

        async def stop(grace):
            # One suspension: a stop that is not awaited to its end (fired as
            # a task, or never awaited) returns before this records.
            await asyncio.sleep(0)
            finished.append(grace)

        handle.stop = mocker.AsyncMock(side_effect=stop)
        worker = DockerWorker(image=IMAGE)
        await worker.start()

        # Act
        await worker.stop(grace=grace)

        # Assert
        assert finished == [grace]
        assert worker.container is None

    @pytest.mark.asyncio
    async def test_stop_with_started_worker(self, start_worker, handle):
        """Test a worker's container after stop.

        Given:
            A started worker
        When:
            It is stopped
        Then:
            It should report no container
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)
        await worker.start()

        # Act
        await worker.stop()

        # Assert
        assert worker.container is None


class TestConfinement:
    @pytest.mark.asyncio
    async def test_start_with_default_confinement(self, start_worker):
        """Test the confinement a worker asks for by default.

        Given:
            A worker constructed from an image alone
        When:
            It is started
        Then:
            It should ask for the unprivileged user 65532, a read-only root,
            no-new-privileges, 512 pids, OOM score 500, 8192 open files, the
            bounded ``local`` log driver and the daemon's runtime
        """
        # Arrange
        worker = DockerWorker(image=IMAGE)

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["sandbox"] == {
            "user": "65532:65532",
            "read_only": True,
            "tmpfs": {},
            "cap_add": [],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": 512,
            "oom_score_adj": 500,
            "ulimits": {"nofile": (8192, 8192)},
            "log_config": {
                "type": "local",
                "config": {"max-size": "10m", "max-file": "3"},
            },
            "runtime": None,
        }

    @pytest.mark.asyncio
    async def test_start_with_confinement_keywords(self, start_worker):
        """Test that each confinement keyword reaches the container config.

        Given:
            A worker with every confinement keyword set
        When:
            It is started
        Then:
            It should pass each value as given, a single ulimit as soft and
            hard alike
        """
        # Arrange
        worker = DockerWorker(
            image=IMAGE,
            user="1000:1000",
            read_only=False,
            tmpfs={"/cache": "size=1g"},
            cap_add=["NET_BIND_SERVICE"],
            security_opt=["seccomp=unconfined"],
            pids_limit=64,
            oom_score_adj=-10,
            ulimits={"nofile": 100, "nproc": (10, 20)},
            log_config={"type": "json-file", "config": {"max-size": "1m"}},
            runtime="runsc",
        )

        # Act
        await worker.start()

        # Assert
        assert _config(start_worker)["sandbox"] == {
            "user": "1000:1000",
            "read_only": False,
            "tmpfs": {"/cache": "size=1g"},
            "cap_add": ["NET_BIND_SERVICE"],
            "security_opt": ["seccomp=unconfined"],
            "pids_limit": 64,
            "oom_score_adj": -10,
            "ulimits": {"nofile": (100, 100), "nproc": (10, 20)},
            "log_config": {"type": "json-file", "config": {"max-size": "1m"}},
            "runtime": "runsc",
        }

    @pytest.mark.parametrize(
        "keywords",
        [
            {"user": ""},
            {"read_only": 1},
            {"cap_add": "NET_RAW"},
            {"pids_limit": 0},
            {"oom_score_adj": 1001},
            {"ulimits": {"nofile": (10, 5)}},
            {"log_config": {"driver": "json-file"}},
            {"tmpfs": {"relative": "size=1m"}},
            {"runtime": ""},
        ],
    )
    def test___init___with_bad_confinement(self, keywords):
        """Test that a bad confinement keyword fails at construction.

        Given:
            One malformed confinement keyword
        When:
            A `DockerWorker` is constructed
        Then:
            It should raise `ValueError` naming the keyword
        """
        # Act & assert
        with pytest.raises(ValueError, match=next(iter(keywords)).split("_")[0]):
            DockerWorker(image="unused", **keywords)
