"""Tests for `wool_docker.discovery`, without a Docker Engine.

Iteration and ``publish("worker-added", ...)`` talk to the Engine; they are tested
against the real daemon in ``tests/integration/test_discovery.py``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import AsyncIterable

import pytest
import wool

from wool_docker import _native
from wool_docker.discovery import DockerDiscovery


def _on_gpu(metadata) -> bool:
    """A picklable predicate: workers tagged ``gpu``."""
    return "gpu" in metadata.tags


def _in_eu(metadata) -> bool:
    """Another picklable predicate: workers whose extra names region ``eu``."""
    return metadata.extra.get("region") == "eu"


class TestDockerDiscovery:
    """Tests for `wool_docker.discovery.DockerDiscovery`."""

    def test___init___with_default_arguments(self):
        """Test constructing a discovery with no arguments.

        Given:
            No network and no labels
        When:
            `DockerDiscovery` is constructed
        Then:
            It should satisfy `wool.DiscoveryLike`
        """
        # Act
        discovery = DockerDiscovery()

        # Assert
        assert isinstance(discovery, wool.DiscoveryLike)

    def test___init___with_empty_labels(self):
        """Test constructing a discovery that would select every container.

        Given:
            An empty ``labels`` mapping
        When:
            `DockerDiscovery` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="labels must select something"):
            DockerDiscovery(labels={})

    @pytest.mark.parametrize("value", [1, True, None], ids=repr)
    def test___init___with_non_string_label_value(self, value):
        """Test constructing a discovery with a label value Docker cannot carry.

        Given:
            A label whose value is not a string
        When:
            `DockerDiscovery` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="labels must map"):
            DockerDiscovery(labels={"wool.worker": value})

    @pytest.mark.parametrize("key", ["", 1], ids=repr)
    def test___init___with_invalid_label_key(self, key):
        """Test constructing a discovery with a label key Docker cannot carry.

        Given:
            A label whose key is empty or not a string
        When:
            `DockerDiscovery` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="labels must map"):
            DockerDiscovery(labels={key: "true"})

    def test___init___with_empty_network(self):
        """Test constructing a discovery scoped to an unnamed network.

        Given:
            ``network=""``
        When:
            `DockerDiscovery` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError, match="network"):
            DockerDiscovery(network="")

    def test___eq___with_equal_arguments(self):
        """Test comparing discoveries of the same scope.

        Given:
            Two discoveries of one network, with the same labels given in
            different orders
        When:
            They are compared with ``==``
        Then:
            It should return ``True``
        """
        # Arrange
        first = DockerDiscovery("wool", {"a": "1", "b": "2"})
        second = DockerDiscovery("wool", {"b": "2", "a": "1"})

        # Act
        equal = first == second

        # Assert
        assert equal is True

    @pytest.mark.parametrize(
        "other",
        [
            DockerDiscovery("other", {"wool.worker": "true"}),
            DockerDiscovery(None, {"wool.worker": "true"}),
            DockerDiscovery("wool", {"wool.worker": "false"}),
            DockerDiscovery("wool", {"wool.worker": "true", "team": "ml"}),
            DockerDiscovery(
                "wool", {"wool.worker": "true"}, docker_host="tcp://127.0.0.1:2375"
            ),
        ],
        ids=["network", "no-network", "label-value", "more-labels", "docker-host"],
    )
    def test___eq___with_different_scope(self, other):
        """Test comparing discoveries of different scopes.

        Given:
            A discovery and one that differs in network, labels or Engine
        When:
            They are compared with ``==``
        Then:
            It should return ``False``
        """
        # Arrange
        discovery = DockerDiscovery("wool", {"wool.worker": "true"})

        # Act
        equal = discovery == other

        # Assert
        assert equal is False

    def test_owner_with_default_labels(self):
        """Test the owner filter of a discovery with the default labels.

        Given:
            No ``labels`` and no ``shared``
        When:
            `DockerDiscovery` is constructed
        Then:
            Its owner should be this process's owner token, the label its
            `DockerWorker` containers carry
        """
        # Act
        discovery = DockerDiscovery("wool")

        # Assert
        assert discovery.owner == _native.owner_token()

    @pytest.mark.parametrize(
        "discovery",
        [
            DockerDiscovery("wool", {"wool.worker": "true"}),
            DockerDiscovery("wool", shared=True),
        ],
        ids=["explicit-labels", "shared"],
    )
    def test_owner_with_explicit_labels_or_shared(self, discovery):
        """Test the owner filter of a discovery the user widened.

        Given:
            Explicit ``labels`` (even the default ones), or ``shared=True``
        When:
            `DockerDiscovery` is constructed
        Then:
            It should have no owner filter
        """
        # Act & assert
        assert discovery.owner is None

    def test___eq___with_shared_and_default(self):
        """Test comparing a default discovery with a shared one.

        Given:
            Two discoveries of one network with the default labels, one of them
            ``shared=True``
        When:
            They are compared, and their subscribers are compared
        Then:
            Neither should be equal: they discover different containers
        """
        # Arrange
        default = DockerDiscovery("wool")
        shared = DockerDiscovery("wool", shared=True)

        # Act & assert
        assert default == DockerDiscovery("wool")
        assert hash(default) == hash(DockerDiscovery("wool"))
        assert default != shared
        assert default.subscriber != shared.subscriber
        assert repr(shared) == (
            "DockerDiscovery(network='wool', labels={'wool.worker': 'true'}, "
            "shared=True)"
        )

    def test_subscriber_with_pickle_into_another_process(self):
        """Test that a subscriber's owner travels with it.

        Given:
            The subscriber of a default discovery, pickled
        When:
            Another process unpickles it
        Then:
            It should filter by this process's owner token, not its own
        """
        # Arrange
        data = pickle.dumps(DockerDiscovery("wool").subscriber)
        code = (
            "import pickle, sys\n"
            "from wool_docker import _native\n"
            "s = pickle.loads(sys.stdin.buffer.read())\n"
            "print(s._discovery.owner)\n"
            "print(_native.owner_token())\n"
        )

        # Act
        result = subprocess.run(
            [sys.executable, "-c", code],
            input=data,
            capture_output=True,
            check=True,
            timeout=60,
        )

        # Assert
        carried, theirs = result.stdout.decode().split()
        assert carried == _native.owner_token()
        assert theirs != carried

    def test___eq___with_other_type(self):
        """Test comparing a discovery with something else.

        Given:
            A discovery and a string
        When:
            They are compared with ``==``
        Then:
            It should return ``False``
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        equal = discovery == "wool"

        # Assert
        assert equal is False

    def test___hash___with_equal_instances(self):
        """Test hashing discoveries of the same scope.

        Given:
            Two equal discoveries
        When:
            They are hashed
        Then:
            It should give them the same hash
        """
        # Arrange
        first = DockerDiscovery("wool", {"a": "1", "b": "2"})
        second = DockerDiscovery("wool", {"b": "2", "a": "1"})

        # Act
        hashes = {hash(first), hash(second)}

        # Assert
        assert len(hashes) == 1

    def test___repr___with_network_and_labels(self):
        """Test a discovery's representation.

        Given:
            A discovery of network ``wool`` with the default labels
        When:
            ``repr`` is called on it
        Then:
            It should name the network and labels
        """
        # Arrange
        discovery = DockerDiscovery("wool")

        # Act
        text = repr(discovery)

        # Assert
        assert text == "DockerDiscovery(network='wool', labels={'wool.worker': 'true'})"

    def test_labels_with_default_labels(self):
        """Test the labels a default discovery selects on.

        Given:
            A discovery constructed without labels
        When:
            ``labels`` is read
        Then:
            It should return ``{"wool.worker": "true"}``
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        labels = discovery.labels

        # Assert
        assert labels == {"wool.worker": "true"}

    def test_labels_with_custom_labels(self):
        """Test the labels of a discovery given its own selector.

        Given:
            A discovery constructed with a Swarm service label
        When:
            ``labels`` is read
        Then:
            It should return exactly that label, without the default one
        """
        # Arrange
        discovery = DockerDiscovery(
            labels={"com.docker.swarm.service.name": "wool-worker"}
        )

        # Act
        labels = discovery.labels

        # Assert
        assert labels == {"com.docker.swarm.service.name": "wool-worker"}

    def test_labels_with_empty_value(self):
        """Test a selector label that matches any value.

        Given:
            A discovery constructed with a label whose value is empty
        When:
            ``labels`` is read
        Then:
            It should keep the empty value
        """
        # Arrange
        discovery = DockerDiscovery(labels={"com.docker.compose.project": ""})

        # Act
        labels = discovery.labels

        # Assert
        assert labels == {"com.docker.compose.project": ""}

    def test_labels_with_assignment(self):
        """Test that a discovery's selector cannot be changed through ``labels``.

        Given:
            A discovery's ``labels``
        When:
            A key is assigned on them
        Then:
            It should raise `TypeError`
        """
        # Arrange
        labels = DockerDiscovery().labels

        # Act & assert
        with pytest.raises(TypeError):
            labels["team"] = "ml"  # type: ignore[index]

    def test_network_without_network(self):
        """Test the network of an unscoped discovery.

        Given:
            A discovery constructed without a network
        When:
            ``network`` is read
        Then:
            It should return ``None``
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        network = discovery.network

        # Assert
        assert network is None

    def test_network_with_network(self):
        """Test the network of a scoped discovery.

        Given:
            A discovery constructed with ``network="wool"``
        When:
            ``network`` is read
        Then:
            It should return ``"wool"``
        """
        # Arrange
        discovery = DockerDiscovery(network="wool")

        # Act
        network = discovery.network

        # Assert
        assert network == "wool"

    def test_publisher_with_default_arguments(self):
        """Test a discovery's publisher.

        Given:
            A default discovery
        When:
            ``publisher`` is read
        Then:
            It should return a `DockerDiscovery.Publisher` satisfying
            `wool.DiscoveryPublisherLike`
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        publisher = discovery.publisher

        # Assert
        assert isinstance(publisher, DockerDiscovery.Publisher)
        assert isinstance(publisher, wool.DiscoveryPublisherLike)

    def test_subscriber_with_default_arguments(self):
        """Test that a discovery's subscriber is a subscriber.

        Given:
            A default discovery
        When:
            ``subscriber`` is read
        Then:
            It should return an async iterable satisfying
            `wool.DiscoverySubscriberLike`
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        subscriber = discovery.subscriber

        # Assert
        assert isinstance(subscriber, AsyncIterable)
        assert isinstance(subscriber, wool.DiscoverySubscriberLike)

    def test_subscriber_as_discovery(self):
        """Test that a discovery's subscriber is itself a discovery.

        Given:
            A default discovery
        When:
            ``subscriber`` is read
        Then:
            It should return an object satisfying `wool.DiscoveryLike`, as
            ``WorkerPool(discovery=d.subscriber)`` requires on wool 0.15
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        subscriber = discovery.subscriber

        # Assert
        assert isinstance(subscriber, wool.DiscoveryLike)

    def test_subscriber_with_repeated_access(self):
        """Test reading a discovery's subscriber twice.

        Given:
            A discovery
        When:
            ``subscriber`` is read twice
        Then:
            It should return equal subscribers with equal hashes
        """
        # Arrange
        discovery = DockerDiscovery("wool")

        # Act
        first, second = discovery.subscriber, discovery.subscriber

        # Assert
        assert first == second
        assert hash(first) == hash(second)

    def test_subscriber_with_equal_discoveries(self):
        """Test the subscribers of two equal discoveries.

        Given:
            Two discoveries of the same scope
        When:
            ``subscriber`` is read on each
        Then:
            It should return equal subscribers
        """
        # Arrange
        first = DockerDiscovery("wool", {"a": "1", "b": "2"})
        second = DockerDiscovery("wool", {"b": "2", "a": "1"})

        # Act
        equal = first.subscriber == second.subscriber

        # Assert
        assert equal is True

    def test_subscriber_with_different_discoveries(self):
        """Test the subscribers of discoveries of different scopes.

        Given:
            Discoveries of two different networks
        When:
            ``subscriber`` is read on each
        Then:
            It should return unequal subscribers
        """
        # Arrange
        first = DockerDiscovery("wool")
        second = DockerDiscovery("other")

        # Act
        equal = first.subscriber == second.subscriber

        # Assert
        assert equal is False

    def test_subscriber_with_pickle(self):
        """Test pickling a discovery's subscriber.

        Given:
            The subscriber of a discovery with a network, custom labels and an
            Engine address
        When:
            It is pickled and unpickled
        Then:
            It should equal the original
        """
        # Arrange
        subscriber = DockerDiscovery(
            "wool", {"team": "ml"}, docker_host="tcp://127.0.0.1:2375"
        ).subscriber

        # Act
        restored = pickle.loads(pickle.dumps(subscriber))

        # Assert
        assert restored == subscriber

    def test_subscriber_with_default_filter_and_pickle(self):
        """Test pickling the subscriber of a discovery with a default filter.

        Given:
            The subscriber of a discovery with a module-level filter
        When:
            It is pickled and unpickled
        Then:
            It should equal the original
        """
        # Arrange
        subscriber = DockerDiscovery("wool", filter=_on_gpu).subscriber

        # Act
        restored = pickle.loads(pickle.dumps(subscriber))

        # Assert
        assert restored == subscriber

    def test_subscriber_of_subscriber(self):
        """Test a subscriber's own ``subscriber``.

        Given:
            A discovery's subscriber
        When:
            Its ``subscriber`` is read
        Then:
            It should return the same object
        """
        # Arrange
        subscriber = DockerDiscovery().subscriber

        # Act
        result = subscriber.subscriber

        # Assert
        assert result is subscriber

    def test_publisher_of_subscriber(self):
        """Test a subscriber's ``publisher``.

        Given:
            A discovery's subscriber
        When:
            Its ``publisher`` is read
        Then:
            It should return a `DockerDiscovery.Publisher` binding every
            interface
        """
        # Arrange
        subscriber = DockerDiscovery().subscriber

        # Act
        publisher = subscriber.publisher

        # Assert
        assert isinstance(publisher, DockerDiscovery.Publisher)
        assert publisher.bind_host == "0.0.0.0"

    def test_subscribe_with_filter(self):
        """Test that a filtered subscriber is a subscriber and a discovery.

        Given:
            A discovery and a predicate
        When:
            `subscribe` is called with the predicate
        Then:
            It should return an async iterable satisfying
            `wool.DiscoverySubscriberLike` and `wool.DiscoveryLike`
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        subscriber = discovery.subscribe(_on_gpu)

        # Assert
        assert isinstance(subscriber, AsyncIterable)
        assert isinstance(subscriber, wool.DiscoverySubscriberLike)
        assert isinstance(subscriber, wool.DiscoveryLike)

    def test_subscribe_with_different_filters(self):
        """Test that the filter is part of a subscriber's identity.

        Given:
            A discovery
        When:
            `subscribe` is called with a predicate, and ``subscriber`` is read
        Then:
            It should return unequal subscribers
        """
        # Arrange
        discovery = DockerDiscovery()

        # Act
        equal = discovery.subscribe(_on_gpu) == discovery.subscriber

        # Assert
        assert equal is False

    def test_subscribe_without_filter(self):
        """Test subscribing without a filter on a discovery that has one.

        Given:
            A discovery constructed with a default filter
        When:
            `subscribe` is called without a filter
        Then:
            It should return a subscriber equal to one with the default filter
        """
        # Arrange
        discovery = DockerDiscovery(filter=_on_gpu)

        # Act
        subscriber = discovery.subscribe()

        # Assert
        assert subscriber == discovery.subscribe(_on_gpu)

    def test_subscribe_with_filter_over_default_filter(self):
        """Test that an explicit filter replaces the discovery's default.

        Given:
            A discovery constructed with a default filter
        When:
            `subscribe` is called with another filter
        Then:
            It should return a subscriber equal to one with only that filter
            on a discovery without a default
        """
        # Arrange
        discovery = DockerDiscovery(filter=_on_gpu)

        # Act
        subscriber = discovery.subscribe(_in_eu)

        # Assert
        assert subscriber == DockerDiscovery().subscribe(_in_eu)

    def test_subscribe_with_filter_and_pickle(self):
        """Test pickling a filtered subscriber.

        Given:
            A subscriber with a module-level filter
        When:
            It is pickled and unpickled
        Then:
            It should equal the original
        """
        # Arrange
        subscriber = DockerDiscovery("wool").subscribe(_on_gpu)

        # Act
        restored = pickle.loads(pickle.dumps(subscriber))

        # Assert
        assert restored == subscriber

    def test_subscribe_on_subscriber(self):
        """Test subscribing through a subscriber.

        Given:
            A discovery's subscriber
        When:
            `subscribe` is called on it with a filter
        Then:
            It should return the discovery's subscriber with that filter
        """
        # Arrange
        discovery = DockerDiscovery("wool")

        # Act
        subscriber = discovery.subscriber.subscribe(_on_gpu)

        # Assert
        assert subscriber == discovery.subscribe(_on_gpu)

    def test_subscribe_on_filtered_subscriber_without_filter(self):
        """Test subscribing without a filter through a filtered subscriber.

        Given:
            A subscriber with a filter
        When:
            `subscribe` is called on it without a filter
        Then:
            It should return a subscriber equal to it
        """
        # Arrange
        subscriber = DockerDiscovery("wool").subscribe(_on_gpu)

        # Act
        result = subscriber.subscribe()

        # Assert
        assert result == subscriber


class TestDockerDiscoveryPublisher:
    """Tests for `wool_docker.discovery.DockerDiscovery.Publisher`."""

    def test_bind_host_with_default_discovery(self):
        """Test where workers published through Docker should listen.

        Given:
            A discovery's publisher
        When:
            ``bind_host`` is read
        Then:
            It should return ``"0.0.0.0"``, since containers serve on their own
            network address
        """
        # Arrange
        publisher = DockerDiscovery().publisher

        # Act
        bind_host = publisher.bind_host

        # Assert
        assert bind_host == "0.0.0.0"

    @pytest.mark.asyncio
    async def test___aenter___with_async_with(self):
        """Test entering a publisher without an Engine.

        Given:
            A discovery's publisher, on a host address nothing listens on
        When:
            It is entered with ``async with``
        Then:
            It should yield itself
        """
        # Arrange
        publisher = DockerDiscovery(docker_host="tcp://127.0.0.1:1").publisher

        # Act
        async with publisher as entered:
            pass

        # Assert
        assert entered is publisher

    @pytest.mark.asyncio
    async def test___aexit___with_exception(self):
        """Test leaving a publisher because of an error.

        Given:
            A publisher entered with ``async with``
        When:
            The body raises
        Then:
            It should let the exception propagate
        """
        # Arrange
        publisher = DockerDiscovery().publisher

        # Act & assert
        with pytest.raises(LookupError):
            async with publisher:
                raise LookupError("body failed")
