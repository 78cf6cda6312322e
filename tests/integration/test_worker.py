"""Tests for `wool_docker.DockerWorker` against the real Docker Engine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from uuid import uuid4

import pytest
import wool
from wool.runtime.worker.base import ChannelOptions
from wool.runtime.worker.base import WorkerOptions
from wool.runtime.worker.connection import WorkerConnection

from wool_docker import ContainerFailedError
from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import ImageMismatchError
from wool_docker import ImageNotFoundError
from wool_docker import NetworkNotFoundError
from wool_docker import WorkerStartTimeout
from wool_docker import _native

from . import routines
from .conftest import IDENTITY
from .modes_harness import destroyed

pytestmark = pytest.mark.integration


TIMEOUT = 60.0
"""Seconds any single wait of these tests may take."""

_OWNER = """
import asyncio
import json
import sys

from wool_docker import DockerWorker


async def main():
    worker = DockerWorker(**json.loads(sys.argv[1]))
    await worker.start()
    print(worker.container, flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""
"""A process that starts a worker, prints its container's name, and waits."""


def _lambda_factory(case):
    """The seed's factory shape: a lambda forwarding the pool's keywords."""
    return lambda *tags, **kwargs: DockerWorker(
        *tags,
        image=case.image,
        network=case.network,
        labels=case.labels,
        name_prefix=case.name_prefix,
        **kwargs,
    )


def _partial_factory(case):
    """A `functools.partial` of `DockerWorker` as the factory."""
    return functools.partial(
        DockerWorker,
        image=case.image,
        network=case.network,
        labels=case.labels,
        name_prefix=case.name_prefix,
    )


class TestDockerWorker:
    """Tests for `wool_docker.worker.DockerWorker` on the real Docker Engine."""

    @pytest.mark.parametrize(
        ("tags", "options"),
        [
            pytest.param(("gpu,fast",), {}, id="comma-in-tag"),
            pytest.param((), {"port": 0}, id="port-0"),
            pytest.param((), {"answer": 42}, id="non-string-extra"),
        ],
    )
    def test___init___with_invalid_argument(self, image, tags, options):
        """Test constructing a worker from an argument no container can carry.

        Given:
            A tag with a comma, port 0, or a non-string extra value
        When:
            `DockerWorker` is constructed
        Then:
            It should raise `ValueError`
        """
        # Act & assert
        with pytest.raises(ValueError):
            DockerWorker(*tags, image=image, **options)

    @pytest.mark.asyncio
    async def test_start_with_stop_round_trip(self, case, docker):
        """Test starting a worker on a network, dialing it, and stopping it.

        Given:
            An unstarted worker with two tags on a bridge network
        When:
            It is started, its server is asked how long it has been idle, and
            it is stopped
        Then:
            It should have no metadata before start; after start, advertise
            its container's IP on that network at port 50051, satisfy
            `wool.WorkerLike`, label its container with its metadata, and
            answer the idle RPC; after stop, its container should be gone
        """
        # Arrange
        worker = case.worker("beta", "alpha")
        before = worker.metadata

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
            metadata = worker.metadata
            inspected = await docker.inspect(worker.container)
            connection = WorkerConnection(metadata.address)
            try:
                idle = await connection.idle(timeout=TIMEOUT)
            finally:
                await connection.close()
            await worker.stop()

        # Assert
        ip = inspected["NetworkSettings"]["Networks"][case.network]["IPAddress"]
        labels = inspected["Config"]["Labels"]
        assert before is None
        assert metadata.address == f"{ip}:50051"
        assert isinstance(worker, wool.WorkerLike)
        assert labels["wool.worker"] == "true"
        assert labels["wool.uid"] == str(worker.uid)
        assert labels["wool.tags"] == "alpha,beta"
        assert labels["wool.docker.managed"] == "true"
        assert idle >= 0
        assert worker.container is None
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "factory",
        [
            pytest.param(_lambda_factory, id="lambda"),
            pytest.param(_partial_factory, id="partial"),
        ],
    )
    async def test_start_as_worker_pool_factory(self, case, docker, factory):
        """Test dispatching routines to an ephemeral pool of containers.

        Given:
            A `wool.WorkerPool` of three workers made by a `DockerWorker`
            factory (a lambda forwarding the pool's keywords, or a
            `functools.partial`)
        When:
            A routine returning its host's name is gathered thirty times, and
            the pool is exited
        Then:
            It should run every call in one of the pool's containers, use
            more than one of them, and leave no container behind
        """
        # Arrange
        pool = wool.WorkerPool(spawn=3, quorum=3, worker=factory(case))

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            running = case.containers()
            hosts = await asyncio.gather(*(routines.hostname() for _ in range(30)))

        # Assert
        assert len(running) == 3
        assert set(hosts) <= {container[:12] for container in running}
        assert socket.gethostname() not in hosts
        assert len(set(hosts)) > 1
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_missing_image(self, case):
        """Test starting a worker from an image the Engine does not have.

        Given:
            A worker whose image is not on the daemon, with ``pull="never"``
        When:
            It is started
        Then:
            It should raise `ImageNotFoundError` and create no container
        """
        # Arrange
        worker = case.worker(image=f"{case.name_prefix}-missing:none", pull="never")

        # Act & assert
        with pytest.raises(ImageNotFoundError):
            async with asyncio.timeout(TIMEOUT):
                await worker.start()
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("label", "words"),
        [
            ("wool.docker.python=3.9", "Python 3.9"),
            ("wool.version=99.0.0", "wool 99.0.0"),
        ],
    )
    async def test_start_with_mismatched_image(self, case, docker, image, label, words):
        """Test starting a worker from an image built for another environment.

        Given:
            A worker image labelled with another Python minor version, or another
            wool major version
        When:
            A worker is started from it
        Then:
            It should raise `ImageMismatchError` naming the mismatch, before
            creating any container
        """
        # Arrange
        tag = f"{case.name_prefix}-mismatch:{label.split('=')[0].replace('.', '-')}"
        dockerfile = f"FROM {image}\nLABEL {label}\n"
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, "-"],
            input=dockerfile,
            text=True,
            check=True,
            capture_output=True,
        )
        try:
            worker = case.worker(image=tag)

            # Act & assert
            with pytest.raises(ImageMismatchError, match=words):
                async with asyncio.timeout(TIMEOUT):
                    await worker.start()
            assert case.containers() == []
        finally:
            docker.run("rmi", "-f", tag, check=False)

    @pytest.mark.asyncio
    async def test_start_with_missing_network(self, case):
        """Test starting a worker on a network that does not exist.

        Given:
            A worker whose network does not exist
        When:
            It is started
        Then:
            It should raise `NetworkNotFoundError` and create no container
        """
        # Arrange
        worker = case.worker(network=f"{case.name_prefix}-missing")

        # Act & assert
        with pytest.raises(NetworkNotFoundError):
            async with asyncio.timeout(TIMEOUT):
                await worker.start()
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_container_that_exits(self, case):
        """Test starting a worker whose container exits before it serves.

        Given:
            A worker whose environment overrides ``WOOL_EXTRA`` with text
            that is not JSON
        When:
            It is started
        Then:
            It should raise `ContainerFailedError` carrying the entry point's
            exit code 2 and output naming ``WOOL_EXTRA``, and leave no
            container behind
        """
        # Arrange
        worker = case.worker(environment={"WOOL_EXTRA": "not json"})

        # Act
        with pytest.raises(ContainerFailedError) as caught:
            async with asyncio.timeout(TIMEOUT):
                await worker.start()

        # Assert
        assert caught.value.exit_code == 2
        assert "WOOL_EXTRA" in caught.value.logs
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_timeout_too_short(self, case):
        """Test starting a worker that cannot serve within the timeout.

        Given:
            A worker
        When:
            It is started with a 50 ms timeout
        Then:
            It should raise `WorkerStartTimeout`, a `TimeoutError`, and leave
            no container behind
        """
        # Arrange
        worker = case.worker()

        # Act
        with pytest.raises(WorkerStartTimeout) as caught:
            async with asyncio.timeout(TIMEOUT):
                await worker.start(timeout=0.05)

        # Assert
        assert isinstance(caught.value, TimeoutError)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_cancelled_at_every_point_and_handle_dropped(self, case, docker):
        """Test that no cancelled or dropped worker leaves a container behind.

        Given:
            31 workers starting at once, each cancelled after its own delay
            (every 50 ms from 0 to 1.5 s, which spans check, create, start
            and readiness; a start that wins the race is simply dropped), and
            one started worker dropped without `stop`
        When:
            The cancellations land and the workers are collected
        Then:
            Every container any of them created should be removed within a
            few seconds, and discovery should see none of them
        """
        # Arrange
        since = time.time()
        options = case.options(log_output=False)

        async def cancelled_after(delay: float) -> None:
            # Not `case.worker`: the test holds no reference once this returns.
            starting = asyncio.create_task(DockerWorker(**options).start())
            await asyncio.sleep(delay)
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting

        # Act
        await asyncio.gather(*(cancelled_after(i * 0.05) for i in range(31)))
        dropped = DockerWorker(**options)
        await dropped.start()
        del dropped
        gc.collect()

        # Assert
        await destroyed(
            case.containers(), f"label={case.label}", since=since, timeout=15
        )
        history = await docker.arun(
            "events",
            "--since",
            f"{since - 1:.3f}",
            "--until",
            f"{time.time():.3f}",
            "--filter",
            "type=container",
            "--filter",
            f"label={case.label}",
            "--format",
            "{{.Action}} {{.ID}}",
        )
        actions = [line.split() for line in history.splitlines() if line]
        created = {id for action, id in actions if action == "create"}
        removed = {id for action, id in actions if action == "destroy"}
        assert created, "no worker got as far as creating its container"
        assert created <= removed
        assert case.containers() == []
        assert await _native.list_workers(case.labels) == []

    @pytest.mark.asyncio
    async def test_start_when_cancelled(self, case, docker):
        """Test cancelling a start after the container was created.

        Given:
            A worker starting in a task
        When:
            The task is cancelled once the worker's container exists
        Then:
            It should raise `asyncio.CancelledError` and the container should
            be removed
        """
        # Arrange
        worker = case.worker()
        since = time.time()
        starting = asyncio.create_task(worker.start())
        created = await docker.event(
            "type=container",
            f"label={case.label}",
            "event=create",
            since=since,
            timeout=TIMEOUT,
        )

        # Act
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(TIMEOUT):
                await starting

        # Assert
        await docker.event(
            f"container={created['Actor']['ID']}",
            "event=destroy",
            since=since,
            timeout=TIMEOUT,
        )
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_when_owner_process_is_killed(self, case, docker):
        """Test what happens to a worker container when its owner dies.

        Given:
            A Python process that started a worker and waits forever
        When:
            That process is killed with ``SIGKILL``
        Then:
            It should have the container removed within 15 seconds
        """
        # Arrange
        options = case.options(log_output=False)
        owner = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OWNER,
            json.dumps(options),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert owner.stdout is not None
        try:
            async with asyncio.timeout(TIMEOUT):
                name = (await owner.stdout.readline()).decode().strip()
            if not name:
                _, stderr = await owner.communicate()
                pytest.fail(f"the owner exited before serving: {stderr.decode()}")
            container = (await docker.inspect(name))["Id"]
            since = time.time()

            # Act
            owner.kill()
            async with asyncio.timeout(TIMEOUT):
                await owner.wait()

            # Assert
            destroyed = await docker.event(
                f"container={container}", "event=destroy", since=since, timeout=15
            )
        finally:
            if owner.returncode is None:
                owner.kill()
            await owner.communicate()
            # A killed owner cannot remove its feed directory (the next owner
            # to start removes those of dead processes); this test removes it.
            for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()):
                if base:
                    # Named after its pid and 128 random bits.
                    pattern = os.path.join(base, f"wool-docker-feed-{owner.pid}-*")
                    for directory in glob.glob(pattern):
                        shutil.rmtree(directory, ignore_errors=True)
        assert destroyed["Actor"]["ID"] == container
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_credentials_and_identity(self, case, docker, credentials):
        """Test an mTLS pool of one worker that advertises an identity.

        Given:
            A `wool.WorkerPool` of one `DockerWorker` with mTLS credentials
            and identity ``worker.wool.test``, whose client accepts that
            name as its peer
        When:
            A routine is dispatched to it
        Then:
            It should run the routine in the container, advertise a secure
            worker with that identity, and keep the private key out of the
            container's configuration (labels, environment)
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kwargs: case.worker(*tags, **kwargs),
            credentials=credentials.as_provider(peers=IDENTITY),
            identity=IDENTITY,
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            (worker,) = case.workers
            host = await routines.hostname()
            metadata = worker.metadata
            inspected = await docker.arun("container", "inspect", worker.container)
            (container,) = case.containers()

        # Assert
        key_lines = [
            line
            for line in credentials.worker_key.decode().splitlines()
            if line and not line.startswith("-----")
        ]
        assert host == container[:12]
        assert metadata.secure is True
        assert metadata.identity == IDENTITY
        assert "PRIVATE KEY" not in inspected
        assert not any(line in inspected for line in key_lines)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_log_output(self, case, caplog):
        """Test forwarding a container's output to Python logging.

        Given:
            A worker with ``log_output`` left on
        When:
            It is started and stopped
        Then:
            It should log its container's output, including the
            ``wool-docker ready`` line, to ``wool_docker.worker`` at INFO
        """
        # Arrange
        caplog.set_level(logging.INFO, logger="wool_docker.worker")
        worker = case.worker()

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
            name = worker.container
            await worker.stop()

        # Assert
        lines = [
            record.getMessage()
            for record in caplog.records
            if record.name == "wool_docker.worker"
            and getattr(record, "container", None) == name
        ]
        assert any("wool-docker ready" in line for line in lines)
        assert all(line.startswith(f"[{name}] ") for line in lines)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_without_log_output(self, case, caplog):
        """Test silencing a container's output.

        Given:
            A worker with ``log_output=False``
        When:
            It is started and stopped
        Then:
            It should log nothing of its container's output
        """
        # Arrange
        caplog.set_level(logging.INFO, logger="wool_docker.worker")
        worker = case.worker(log_output=False)

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
            name = worker.container
            await worker.stop()

        # Assert
        assert not [
            record
            for record in caplog.records
            if getattr(record, "container", None) == name or name in record.getMessage()
        ]
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_stop_without_grace(self, case):
        """Test stopping an idle worker with no grace.

        Given:
            A started, idle worker
        When:
            It is stopped with ``grace=None``
        Then:
            It should return within 5 seconds with its container gone
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()

        # Act
        async with asyncio.timeout(5):
            await worker.stop(grace=None)

        # Assert
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("grace", [-1.0, float("inf"), float("nan"), 1e300])
    async def test_stop_with_unbounded_grace(self, case, grace):
        """Test stopping an idle worker with a grace that bounds nothing.

        Given:
            A started, idle worker
        When:
            It is stopped with a negative, infinite, NaN or huge grace
        Then:
            It should drain (nothing is in flight; NaN counts as no grace) and
            return with its container gone, without an error from the native
            core
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.stop(grace=grace)

        # Assert
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_stop_after_container_was_killed_and_removed(self, case, docker):
        """Test stopping a worker whose container is already gone.

        Given:
            A started worker whose container was killed with ``docker kill``
            and has removed itself
        When:
            It is stopped
        Then:
            It should return without raising and leave no container
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        container = (await docker.inspect(worker.container))["Id"]
        since = time.time()
        await docker.arun("kill", container)
        await docker.event(
            f"container={container}", "event=destroy", since=since, timeout=TIMEOUT
        )

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.stop()

        # Assert
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_stop_right_after_container_was_killed(self, case, docker):
        """Test stopping workers right after their containers were killed.

        Whether the Engine is still removing a killed container when stop
        asks for its removal is a race, so up to ten workers are tried in
        turn.

        Given:
            A started worker whose container was just killed with
            ``docker kill``, ten times over
        When:
            The worker is stopped at once
        Then:
            It should return without raising every time and leave no
            container
        """
        for _ in range(10):
            # Arrange
            worker = case.worker()
            async with asyncio.timeout(TIMEOUT):
                await worker.start()
            await docker.arun("kill", worker.container)

            # Act
            async with asyncio.timeout(TIMEOUT):
                await worker.stop()

        # Assert
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_stop_with_grace_during_routine(self, case, output):
        """Test draining a routine that outlives the stop request.

        Given:
            A started worker running a routine that sleeps for 1 second
        When:
            The worker is stopped with ``grace=5`` while the routine sleeps
        Then:
            It should let the routine, still running when the container got
            the stop request, complete and return its result, then remove
            the container
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        token = uuid4().hex
        async with wool.WorkerProxy(workers=[worker.metadata]):
            call = asyncio.create_task(routines.nap(token, 1.0))
            await output.wait_for(f"napping {token}", timeout=TIMEOUT)

            # Act
            async with asyncio.timeout(TIMEOUT):
                stopping = asyncio.create_task(worker.stop(grace=5))
                await output.wait_for("'stop 5'", timeout=TIMEOUT)
                running_when_stopped = not call.done()
                result = await call
                await stopping

        # Assert
        assert running_when_stopped
        assert result == token
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_stop_without_grace_during_routine(self, case, output):
        """Test cancelling a routine by stopping its worker without grace.

        Given:
            A started worker running a routine that sleeps for 120 seconds
        When:
            The worker is stopped with ``grace=None`` while the routine sleeps
        Then:
            It should cancel the routine, so that its call ends, cancelled or
            refused by the stopping server, well before the sleep is over, and
            remove the container
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        token = uuid4().hex
        async with wool.WorkerProxy(workers=[worker.metadata]):
            call = asyncio.create_task(routines.nap(token, 120.0))
            await output.wait_for(f"napping {token}", timeout=TIMEOUT)

            # Act
            # A quarter of the nap: a stop that waited for the routine could not
            # make it, while a loaded machine's slow teardown (our own kill comes
            # only 10 s after the stop command) still does.
            async with asyncio.timeout(30):
                await worker.stop(grace=None)
                await asyncio.wait([call])

        # Assert
        # The cancellation reaches the caller as a cancellation, or, when the
        # server's shutdown beats it to the caller, as that shutdown
        # (UNAVAILABLE, GOAWAY): either way the call ended, never with a result.
        if not call.cancelled():
            error = call.exception()
            assert error is not None and "UNAVAILABLE" in str(error), error
        assert case.containers() == []


class TestLocalWorkerKeywords:
    """Every keyword `LocalWorker` takes means the same on `DockerWorker`."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize("kind", ["docker", "local"])
    async def test_backpressure_that_rejects_every_task(self, case, kind):
        """Test an admission hook that rejects everything, on both kinds.

        Given:
            A pool of one worker whose ``backpressure`` hook rejects every task
        When:
            A routine is dispatched
        Then:
            It should fail the same way on both kinds: no worker accepts it
        """
        # Arrange
        async with case.pool(kind, backpressure=routines.reject_all):
            # Act
            with pytest.raises(Exception) as caught:
                async with asyncio.timeout(TIMEOUT):
                    await routines.hostname()

        # Assert
        assert type(caught.value).__name__ == "NoWorkersAvailable"
        assert case.containers() == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("kind", ["docker", "local"])
    async def test_backpressure_that_accepts_and_other_keywords(self, case, kind):
        """Test the rest of LocalWorker's keywords, on both kinds.

        Given:
            A pool of one worker with an accepting ``backpressure`` hook,
            ``options=WorkerOptions(...)`` with custom channel and server
            fields, ``proxy_pool_ttl=5`` and ``daemon=False``
        When:
            A routine is dispatched
        Then:
            It should run, and the worker should advertise the options'
            channel
        """
        # Arrange
        channel = ChannelOptions(max_concurrent_streams=7)
        options = WorkerOptions(channel=channel, max_ping_strikes=5)
        keywords = {
            "backpressure": routines.accept_all,
            "options": options,
            "proxy_pool_ttl": 5.0,
            "daemon": False,
        }
        discovery = DockerDiscovery(network=case.network, labels=case.labels)

        # Act
        async with case.pool(kind, **keywords):
            async with asyncio.timeout(TIMEOUT):
                host = await routines.hostname()
            if kind == "docker":
                it = aiter(discovery.subscriber)
                event = await anext(it)
                await it.aclose()

        # Assert
        assert host
        if kind == "docker":
            assert event.metadata.options == channel
        assert case.containers() == []
