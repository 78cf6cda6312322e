"""Tests for `wool_docker.Standby`'s keywords and state, without a Docker Engine.

No test here enters a standby: entering reaches the Engine, which the
real-daemon tests in ``tests/integration/test_standby.py`` cover.
"""

from __future__ import annotations

import asyncio

import pytest
from wool.runtime.worker.auth import WorkerCredentials

from wool_docker import DockerWorker
from wool_docker import Standby

IMAGE = "wool-worker:test"
"""An image name; no test here pulls or inspects it."""

CREDENTIALS = WorkerCredentials(
    ca_cert=b"-----CA-----", worker_key=b"-----KEY-----", worker_cert=b"-----CERT-----"
)
"""Placeholder TLS material; nothing here handshakes with it."""


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(2.0, id="float"),
        pytest.param("2", id="text"),
    ],
)
def test___init___with_invalid_size(size):
    """Test a size that is not a count of containers.

    Given:
        A negative number, a bool, a float or text as ``size``
    When:
        A `Standby` is constructed
    Then:
        It should raise `ValueError` naming ``size``
    """
    # Act & assert
    with pytest.raises(ValueError, match="size"):
        Standby(IMAGE, size=size)


def test___init___with_invalid_refill():
    """Test a refill policy that does not exist.

    Given:
        ``refill="never"``
    When:
        A `Standby` is constructed
    Then:
        It should raise `ValueError` naming both policies
    """
    # Act & assert
    with pytest.raises(ValueError, match="`release` or `claim`"):
        Standby(IMAGE, refill="never")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "park_timeout",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1.0, id="negative"),
        pytest.param(float("inf"), id="infinite"),
        pytest.param(float("nan"), id="nan"),
    ],
)
def test___init___with_invalid_park_timeout(park_timeout):
    """Test a park timeout that bounds nothing.

    Given:
        Zero, a negative, an infinite or a NaN ``park_timeout``
    When:
        A `Standby` is constructed
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError, match="park_timeout"):
        Standby(IMAGE, park_timeout=park_timeout)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("credentials", CREDENTIALS),
        ("host", "0.0.0.0"),
        ("identity", "worker.wool.test"),
        ("options", None),
        ("backpressure", None),
        ("shutdown_grace_period", 5.0),
        ("proxy_pool_ttl", 5.0),
        ("start_timeout", 5.0),
        ("tags", ("gpu",)),
        ("extra", {"zone": "west"}),
    ],
)
def test___init___with_per_worker_keyword(keyword, value):
    """Test a keyword that belongs to each worker, not to the containers.

    Given:
        One of `DockerWorker`'s per-worker keywords
    When:
        It is passed to `Standby`
    Then:
        It should raise `ValueError` naming it, so it is not silently
        ignored for every claimed worker
    """
    # Act & assert
    with pytest.raises(ValueError, match=keyword):
        Standby(IMAGE, **{keyword: value})


@pytest.mark.parametrize(
    "keywords",
    [
        pytest.param({"port": 0}, id="port-0"),
        pytest.param({"engine_access": "root"}, id="engine-access"),
    ],
)
def test___init___with_invalid_container_keyword(keywords):
    """Test a container keyword that `DockerWorker` refuses.

    Given:
        Port 0, or an engine access that does not exist
    When:
        It is passed to `Standby`
    Then:
        It should raise `ValueError`, as `DockerWorker` does
    """
    # Act & assert
    with pytest.raises(ValueError):
        DockerWorker(image=IMAGE, **keywords)
    with pytest.raises(ValueError):
        Standby(IMAGE, **keywords)


def test___init___with_unknown_keyword():
    """Test a keyword no container has (a misspelt one, or a worker's extra).

    Given:
        ``mem_limt="1g"``, which `DockerWorker` would take as extra metadata
    When:
        It is passed to `Standby`
    Then:
        It should raise `ValueError` naming it, rather than give every
        claimed worker that metadata
    """
    # Act & assert
    with pytest.raises(ValueError, match="mem_limt"):
        Standby(IMAGE, mem_limt="1g")


def test___init___with_container_keywords():
    """Test a standby shaped by container keywords.

    Given:
        Labels, environment, limits and sandbox keywords
    When:
        A `Standby` is constructed
    Then:
        It should keep its size and have nothing parked
    """
    # Act
    standby = Standby(
        IMAGE,
        "wool",
        size=3,
        refill="claim",
        labels={"team": "a"},
        environment={"A": "1"},
        cpus=1.0,
        mem_limit="256m",
        pids_limit=64,
        name_prefix="warm",
    )

    # Assert
    assert standby.size == 3
    assert standby.parked == 0


def test_filled_before_entry():
    """Test waiting on a standby that was never entered.

    Given:
        A `Standby` not entered
    When:
        `filled` is awaited
    Then:
        It should raise `RuntimeError` saying to enter it first
    """
    # Arrange
    standby = Standby(IMAGE, size=1)

    # Act & assert
    with pytest.raises(RuntimeError, match="enter"):
        asyncio.run(standby.filled())


def test_close_before_entry():
    """Test closing a standby that was never entered.

    Given:
        A `Standby` not entered
    When:
        It is closed
    Then:
        Nothing should happen and nothing should be parked
    """
    # Arrange
    standby = Standby(IMAGE, size=1)

    # Act
    asyncio.run(standby.close())

    # Assert
    assert standby.parked == 0


def test_worker_with_tags_extra_and_pool_keywords():
    """Test the pool factory's worker.

    Given:
        A `Standby` with labels and a name prefix
    When:
        `worker` is called as a pool calls it, with tags, extra and
        credentials
    Then:
        It should return an unstarted `DockerWorker` with those tags and
        that extra, secure, and with the standby's shape
    """
    # Arrange
    standby = Standby(IMAGE, "wool", labels={"team": "a"}, name_prefix="warm")

    # Act
    worker = standby.worker(
        "gpu", credentials=CREDENTIALS, identity="worker.wool.test", zone="west"
    )

    # Assert
    assert isinstance(worker, DockerWorker)
    assert worker.metadata is None
    assert worker.container is None
    config = worker._config(None)
    assert config["publication"]["tags"] == ["gpu"]
    assert config["publication"]["extra"] == {"zone": "west"}
    assert config["publication"]["identity"] == "worker.wool.test"
    assert config["network"] == "wool"
    assert config["labels"] == {"team": "a"}
    assert config["image"] == IMAGE


def test_worker_outside_entry():
    """Test a worker made by a standby that is not entered.

    Given:
        A `Standby` not entered
    When:
        `worker` makes a worker
    Then:
        The worker should have no standby to claim from (it starts a fresh
        container)
    """
    # Arrange
    standby = Standby(IMAGE)

    # Act
    worker = standby.worker()

    # Assert
    assert worker._standby() is None
