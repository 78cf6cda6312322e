"""Real-daemon tests of `wool_docker.DockerDiscovery` surviving Engine trouble.

The subscriber reaches the Engine through `_SeverableEngine`, a small unix
socket proxy in front of ``/var/run/docker.sock`` that a test can cut (every
open connection closed, new ones refused) and restore. The containers
themselves are started, killed and removed with the real docker CLI, which
never goes through the proxy, so the Engine changes while the subscriber is
cut off from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Final

import pytest
import pytest_asyncio
from wool.runtime.discovery.base import DiscoveryEvent

from wool_docker import DockerDiscovery
from wool_docker import EngineUnavailableError
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL
from wool_docker.pytest import DockerCli

from .modes_harness import serving
from .test_discovery import _next
from .test_discovery import _subscription

pytestmark = pytest.mark.integration

_TIMEOUT = 30.0
_QUIET = 2.0
_LATE = 8
_AWAY = 6.0
_RUN = uuid.uuid4().hex[:8]
_ENGINE_SOCKET: Final[str] = "/var/run/docker.sock"
_REQUEST_LINE: Final[re.Pattern[bytes]] = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE) (/\S*) HTTP/1\.[01]\r\n"
)

_log = logging.getLogger(__name__)

_FAKETIME: Final[str] = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
"""libfaketime (Debian's ``faketime``; ``scripts/build.sh`` installs it)."""

_CLOCK_CLIENT: Final[str] = """
import asyncio, json, sys, time
from wool_docker import _native

async def main():
    selector, network, host, now = json.loads(sys.argv[1])
    # How far ahead this process's clock is (the test checks the fake took).
    print(time.time() - now, flush=True)
    subscription = await _native.subscribe(selector, network, host)
    while (batch := await subscription.next()) is not None:
        for kind, record in batch:
            if kind == "worker-added":
                print(record["uid"], flush=True)
                subscription.close()
                return

asyncio.run(main())
"""
"""A subscriber that prints its clock's lead, then the uid of the first worker."""

Run = Callable[..., Awaitable[str]]


class _SeverableEngine:
    """A unix socket in front of the Engine socket whose connections can be cut.

    Each accepted connection gets its own connection to the Engine socket and
    the bytes are piped both ways (an end-of-stream in one direction is passed
    on as a half-close; an error in either closes both). `sever` closes every
    open pair and removes the socket, so new connections fail (``ENOENT``)
    until `restore` listens on the same path again. Request lines going to the
    Engine are recorded, so a test can wait for the subscriber to come back.

    :param path:
        Where to listen.
    """

    def __init__(self, path: Path):
        self.path = path
        self.requests: list[tuple[float, str]] = []
        self._server: asyncio.Server | None = None
        self._generation = 0
        self._connections: set[asyncio.Task[None]] = set()
        self._request_seen = asyncio.Event()
        # Open connections: their first request line, the Engine-to-client
        # pipe and the client's writer (see `end_streams`).
        self._streams: dict[asyncio.Task[None], list[Any]] = {}
        #: Requests matching this are not forwarded: their connection is
        #: reset at once (an Engine whose event stream fails immediately).
        self.refuse: re.Pattern[str] | None = None
        #: Responses to requests matching this lose everything after their
        #: first read from the Engine (the head): an event stream that stays
        #: open and says nothing, as if its events were lost.
        self.mute: re.Pattern[str] | None = None
        #: With `refuse`: refuse only the first matching request, then forward.
        self.refuse_once = False
        #: Requests matching this wait at the proxy until `released` is set.
        self.hold: re.Pattern[str] | None = None
        self.released = asyncio.Event()

    @property
    def url(self) -> str:
        """The ``docker_host`` address of the proxy."""
        return f"unix://{self.path}"

    async def restore(self) -> None:
        """Listen (again) on `path`."""
        assert self._server is None, "the proxy already listens"
        generation = self._generation

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            # Python 3.11 logs an error for a connection task that ends
            # cancelled, and only `sever` cancels it: end it quietly.
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve(generation, reader, writer)

        self._server = await asyncio.start_unix_server(serve, path=str(self.path))

    async def sever(self) -> None:
        """Close every open connection and stop accepting new ones."""
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.path.unlink(missing_ok=True)
        connections = list(self._connections)
        for connection in connections:
            connection.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def end_streams(self, pattern: str) -> int:
        """End, cleanly, every open response whose request line matches.

        Sends the last chunk of a chunked body (``0\\r\\n\\r\\n``) and closes the
        connection, as an Engine ending a stream properly would. Call it only
        while those streams are idle (no event in flight), so the last chunk
        cannot land inside another.

        :param pattern:
            Regular expression searched in the URL-decoded request line.
        :returns:
            How many responses it ended.
        """
        ended = 0
        for task, (line, pipe, writer) in list(self._streams.items()):
            if line is None or not re.search(pattern, urllib.parse.unquote(line)):
                continue
            pipe.cancel()
            await asyncio.gather(pipe, return_exceptions=True)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            task.cancel()
            ended += 1
        return ended

    async def request(self, pattern: str, *, after: float, nth: int = 1) -> float:
        """Wait for the ``nth`` request to the Engine whose line matches ``pattern``.

        :param pattern:
            Regular expression searched in ``"METHOD /path?query"``.
        :param after:
            `time.monotonic` time the requests may not precede.
        :param nth:
            Which matching request to wait for.
        :returns:
            When that request passed the proxy.
        """
        try:
            async with asyncio.timeout(_TIMEOUT):
                while True:
                    seen = [
                        at
                        for at, line in self.requests
                        if at >= after and re.search(pattern, line)
                    ]
                    if len(seen) >= nth:
                        return seen[nth - 1]
                    self._request_seen.clear()
                    await self._request_seen.wait()
        except TimeoutError:
            raise AssertionError(
                f"no request matching {pattern!r} within {_TIMEOUT} s; "
                f"saw {[line for at, line in self.requests if at >= after]}"
            ) from None

    async def _serve(
        self,
        generation: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Pipe one accepted connection to a new Engine connection."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Task[None]] = []
        try:
            if generation != self._generation:
                return  # accepted just before the cut
            engine_reader, upstream = await asyncio.open_unix_connection(_ENGINE_SOCKET)
            stream: list[Any] = [None, None, writer]
            pipes = [
                asyncio.create_task(
                    self._pipe(reader, upstream, record=True, stream=stream)
                ),
                asyncio.create_task(self._pipe(engine_reader, writer, stream=stream)),
            ]
            stream[1] = pipes[1]
            self._streams[task] = stream
            await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
        except OSError:
            pass  # the Engine socket refused; the client sees its end closed
        finally:
            for pipe in pipes:
                pipe.cancel()
            writer.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._connections.discard(task)
            self._streams.pop(task, None)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        record: bool = False,
        stream: list[Any] | None = None,
    ) -> None:
        """Copy ``source`` to ``sink`` until end of stream, then half-close."""
        reads = 0
        while data := await source.read(65536):
            reads += 1
            muted = (
                not record
                and reads > 1
                and self.mute is not None
                and stream is not None
                and stream[0] is not None
                and self.mute.search(stream[0])
            )
            if muted:
                continue
            if record:
                for match in _REQUEST_LINE.finditer(data):
                    line = f"{match[1].decode()} {match[2].decode()}"
                    self.requests.append((time.monotonic(), line))
                    self._request_seen.set()
                    if stream is not None:
                        stream[0] = line
                    if self.refuse is not None and self.refuse.search(line):
                        if self.refuse_once:
                            self.refuse = None
                        raise ConnectionResetError(f"refused {line}")
                    if self.hold is not None and self.hold.search(line):
                        await self.released.wait()
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


_cli = DockerCli()


def _docker(*args: str) -> str:
    """Run the docker CLI (test set-up only) and return its output."""
    return _cli.run(*args).stdout.strip()


async def _adocker(*args: str) -> str:
    """Run the docker CLI without blocking the proxy's event loop."""
    return (await _cli.arun(*args, timeout=_TIMEOUT)).strip()


def _uid(container: str) -> uuid.UUID:
    """The worker uid a container gets by default."""
    return uuid.UUID(hex=container[:32])


@pytest.fixture
def run(selector: dict[str, str], image: str) -> Iterator[Run]:
    """Start worker containers by hand (``docker run``); all removed afterwards."""
    label = next(iter(selector.items()))

    async def start(network: str, *options: str, command: Sequence[str] = ()) -> str:
        args = ["run", "-d", "--network", network, "--label", "wool.worker=true"]
        args += ["--label", f"{RUN_LABEL}={RUN_ID}"]
        args += ["--label", f"{label[0]}={label[1]}", *options]
        return await _adocker(*args, image, *command)

    yield start
    ids = _docker("ps", "-aq", "--filter", f"label={label[0]}={label[1]}").split()
    if ids:
        _cli.remove_containers(*ids)
    assert not _docker("ps", "-aq", "--filter", f"label={label[0]}={label[1]}")


@pytest_asyncio.fixture
async def engine(tmp_path: Path) -> AsyncIterator[_SeverableEngine]:
    """A severable proxy to the Engine, listening; closed afterwards."""
    proxy = _SeverableEngine(tmp_path / "engine.sock")
    await proxy.restore()
    try:
        yield proxy
    finally:
        await proxy.sever()


async def _serving_first_run_only(run: Run, network: str) -> str:
    """Start a worker container (no healthcheck) whose second run takes a
    minute to serve: a restart leaves it running without a server."""
    slow_second_run = (
        "if [ -e /tmp/ran ]; then sleep 60; fi; touch /tmp/ran; "
        "exec python3 -m wool_docker._entrypoint"
    )
    return await run(
        network,
        "--no-healthcheck",
        "--entrypoint",
        "sh",
        command=("-c", slow_second_run),
    )


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    """The first captured record whose message contains ``text``, once it is.

    The native core's records reach Python logging in batches, so this looks
    again every 50 ms, for at most `_TIMEOUT` seconds.
    """
    async with asyncio.timeout(_TIMEOUT):
        while True:
            for record in caplog.records:
                if text in record.getMessage():
                    return record
            await asyncio.sleep(0.05)


async def _silence(events: AsyncIterator[DiscoveryEvent]) -> DiscoveryEvent | None:
    """The next event if one arrives within `_QUIET` seconds, else ``None``.

    Ends the iteration when nothing arrives (the pending step is cancelled).
    """
    try:
        return await asyncio.wait_for(anext(events), _QUIET)
    except TimeoutError:
        return None


class TestDockerDiscoveryRecovery:
    """Tests for `wool_docker.DockerDiscovery` across a cut Engine connection."""

    @pytest.mark.asyncio
    async def test___aiter___with_severed_engine_connection(
        self, engine, network, selector, run, caplog
    ):
        """Test that a subscriber emits exactly the difference after a cut.

        Given:
            A subscriber that discovered two serving worker containers, A and
            B, through a proxy to the Engine.
        When:
            The proxy cuts every connection and refuses new ones; meanwhile A
            is killed and removed and a third container C starts serving;
            then the proxy listens again.
        Then:
            It should yield exactly worker-dropped for A and worker-added for
            C, in either order, and nothing more once its event stream is
            back: B is neither dropped nor added again. The native core's
            warning about the broken stream should reach Python logging.
        """
        # Arrange
        caplog.set_level(logging.WARNING, logger="wool_docker")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            a, b = await run(network), await run(network)
            initial = {
                (await _next(events, "worker-added before the cut")).metadata.uid
                for _ in (a, b)
            }

            # Act
            await engine.sever()
            severed = time.monotonic()
            await _adocker("kill", a)
            await _adocker("rm", a)
            c = await run(network)
            await serving(c, timeout=_TIMEOUT)
            await engine.restore()
            restored = time.monotonic()
            recovered = []
            for _ in range(2):
                recovered.append(await _next(events, "a difference after the cut"))
                _log.info(
                    "%s %s %.3f s after restore (severed %.3f s)",
                    recovered[-1].type,
                    recovered[-1].metadata.uid,
                    time.monotonic() - restored,
                    restored - severed,
                )
            # Quiet from the moment the event stream is back, so a replayed
            # event would be caught too.
            back = await engine.request(r"^GET /v[\d.]+/events", after=restored)
            _log.info("event stream back %.3f s after restore", back - restored)
            extra = await _silence(events)

        # Assert
        assert initial == {_uid(a), _uid(b)}
        assert {(e.type, e.metadata.uid) for e in recovered} == {
            ("worker-dropped", _uid(a)),
            ("worker-added", _uid(c)),
        }
        assert extra is None, f"unexpected {extra.type} for {extra.metadata.uid}"
        assert any(
            r.name == "wool_docker.discovery"
            and r.levelno == logging.WARNING
            and "docker event stream" in r.getMessage()
            for r in caplog.records
        ), [(r.name, r.getMessage()) for r in caplog.records]

    @pytest.mark.asyncio
    async def test___aiter___with_container_event_stream_ended(
        self, engine, network, selector, run
    ):
        """Test a container-event stream that the Engine ends cleanly.

        Given:
            A subscriber that discovered a serving worker container, whose
            network-event stream stays open
        When:
            Only its container-event stream ends (a proper end of the chunked
            body), and then another worker container starts serving
        Then:
            It should re-list, and yield worker-added for the new container
        """
        # Arrange
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            first = await run(network)
            added = await _next(events, "worker-added for the first container")

            # Act
            ended_at = time.monotonic()
            ended = await engine.end_streams(r'/events\?.*"type":\["container"\]')
            await engine.request(r"^GET /v[\d.]+/containers/json", after=ended_at)
            second = await run(network)
            later = await _next(events, "worker-added after the stream ended")

        # Assert
        assert added.metadata.uid == _uid(first)
        assert ended == 1
        assert (later.type, later.metadata.uid) == ("worker-added", _uid(second))

    @pytest.mark.asyncio
    async def test___aiter___with_event_stream_failing_at_once(
        self, engine, network, selector
    ):
        """Test an Engine whose event stream fails as soon as it is opened.

        Given:
            A subscriber through a proxy that resets every events request at
            once, while listings still succeed
        When:
            The subscriber keeps reconnecting
        Then:
            Its re-lists should back off: each listing at least the policy's
            floor (100 ms) after the one before, never back to back. (The
            delays are jittered between that floor and twice the doubling
            schedule, so their sum is random; the schedule is the unit tests'
            of `backoff`.)
        """
        # Arrange
        engine.refuse = re.compile(r"/events\?")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        start = time.monotonic()
        lists = r"^GET /v[\d.]+/containers/json"

        # Act
        async with _subscription(discovery) as events:
            pending = asyncio.ensure_future(anext(events))
            try:
                times = [
                    await engine.request(lists, after=start, nth=n) for n in range(1, 7)
                ]
            finally:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

        # Assert
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= 0.09, f"listings {[round(g, 3) for g in gaps]} s apart"

    @pytest.mark.asyncio
    async def test___aiter___with_events_lost(
        self, engine, network, selector, run, monkeypatch, caplog
    ):
        """Test the periodic re-list against events that never arrive.

        Given:
            A subscriber with a 2 s anti-entropy period
            (``WOOL_DOCKER_RESYNC_INTERVAL``) that discovered a worker, whose
            event stream then stays open but delivers nothing
        When:
            Another worker container starts serving
        Then:
            The periodic re-list should yield worker-added for it, and log
            the drift it corrected
        """
        # Arrange
        monkeypatch.setenv("WOOL_DOCKER_RESYNC_INTERVAL", "2")
        caplog.set_level(logging.WARNING, logger="wool_docker")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            first = await run(network)
            added = await _next(events, "worker-added for the first container")

            # Act
            engine.mute = re.compile(r"/events\?")
            second = await run(network)
            later = await _next(events, "worker-added from the periodic re-list")
            drift = await _logged(caplog, "periodic re-list corrected")

        # Assert
        assert added.metadata.uid == _uid(first)
        assert (later.type, later.metadata.uid) == ("worker-added", _uid(second))
        assert second[:12] in drift.getMessage()

    @pytest.mark.asyncio
    async def test___aiter___with_relist_while_a_follower_is_held(
        self, engine, network, selector, run, monkeypatch, caplog
    ):
        """Test the periodic re-list beside a ready-line follower that is held back.

        Given:
            A subscriber with a 1 s anti-entropy period whose log followers
            are held back at the proxy
        When:
            A worker container starts serving and two periodic re-lists pass;
            then the followers are let through; then, with the event stream
            muted, a second worker container starts serving
        Then:
            The re-lists should be list calls only (no log read) and announce
            nothing and log no drift for the first: its start event arrived,
            and only its follower can tell it serves. Once let through, it
            should yield worker-added for the first; the next re-list should
            yield worker-added for the second, logged as drift naming it
        """
        # Arrange
        monkeypatch.setenv("WOOL_DOCKER_RESYNC_INTERVAL", "1")
        caplog.set_level(logging.WARNING, logger="wool_docker")
        engine.hold = re.compile(r"/logs\?.*follow=(1|true)")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            pending = asyncio.ensure_future(anext(events))
            try:
                subscribed = time.monotonic()
                await engine.request(r"^GET /v[\d.]+/events\?", after=subscribed)

                # Act
                first = await run(network, "--no-healthcheck")
                ran = time.monotonic()
                await engine.request(r"^GET /v[\d.]+/containers/json", after=ran, nth=2)
                announced_while_held = pending.done()
                reads = [
                    line
                    for at, line in engine.requests
                    if at >= ran and "/logs?" in line and not engine.hold.search(line)
                ]
                engine.released.set()
                async with asyncio.timeout(_TIMEOUT):
                    added = await pending
                engine.mute = re.compile(r"/events\?")
                second = await run(network, "--no-healthcheck")
                later = await _next(events, "worker-added for the second container")
                # Records arrive in order: any drift logged for the first came
                # before the second's.
                await _logged(caplog, second[:12])
            finally:
                engine.released.set()
                # Unwound before the subscription closes its generator.
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

        # Assert
        assert not announced_while_held, "a re-list announced a container on its own"
        assert reads == [], f"the periodic re-list read logs: {reads}"
        assert (added.type, added.metadata.uid) == ("worker-added", _uid(first))
        assert (later.type, later.metadata.uid) == ("worker-added", _uid(second))
        drift = [
            r.getMessage()
            for r in caplog.records
            if "periodic re-list corrected" in r.getMessage()
        ]
        assert drift, "the second container's drift was not logged"
        assert all(second[:12] in m and first[:12] not in m for m in drift), drift

    @pytest.mark.asyncio
    async def test___aiter___with_client_clock_ahead_of_the_engine(
        self, engine, network, selector, run
    ):
        """Test a subscriber whose clock runs an hour ahead of the Engine's.

        Given:
            A subscriber in a process whose wall clock is 1 h ahead
            (libfaketime), as with a remote Engine or Docker Desktop's VM, that
            has listed the containers and whose event-stream request is held
            at the proxy
        When:
            A worker container starts serving in that gap, and then the
            event-stream request goes through
        Then:
            It should yield worker-added for it: the Engine replays the gap's
            events from a ``since`` taken by the Engine's clock, where one
            taken by the client's would lie an hour in the future
        """
        # Arrange
        environment = {
            **os.environ,
            "LD_PRELOAD": _FAKETIME,
            "FAKETIME": "+1h",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            # Only the event stream may tell of the container within the test.
            "WOOL_DOCKER_RESYNC_INTERVAL": "600",
        }
        engine.hold = re.compile(r"/events\?")
        started = time.monotonic()
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLOCK_CLIENT,
            json.dumps([selector, network, engine.url, time.time()]),
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None
        try:
            async with asyncio.timeout(_TIMEOUT):
                skew = float((await client.stdout.readline()).decode() or "nan")
            await engine.request(r"^GET /v[\d.]+/events\?", after=started)

            # Act
            # No healthcheck: its first report would be a live event.
            container = await run(network, "--no-healthcheck")
            await serving(container, timeout=_TIMEOUT)
            engine.released.set()
            async with asyncio.timeout(_TIMEOUT):
                announced = (await client.stdout.readline()).decode().strip()
        finally:
            engine.released.set()
            if client.returncode is None:
                client.kill()
            _, stderr = await client.communicate()

        # Assert
        assert skew > 3000, f"the client's clock is not ahead: {stderr.decode()}"
        assert announced == str(_uid(container)), stderr.decode()

    @pytest.mark.asyncio
    async def test___aiter___with_restarted_container_not_serving_yet(
        self, network, selector, run
    ):
        """Test a listing of a restarted container whose new server is not up.

        Given:
            A worker container (no healthcheck) that served once, printing its
            ready line, and was restarted into a run that takes a minute to
            serve again
        When:
            A new subscriber lists it
        Then:
            It should not announce it: the previous run's ready line proves
            nothing about the new server, only lines stamped after the
            previous run's ``FinishedAt`` (and at most 1 s before the run's
            ``StartedAt``) count
        """
        # Arrange
        container = await _serving_first_run_only(run, network)
        await serving(container, timeout=_TIMEOUT)
        await _adocker("restart", "--time", "0", container)
        discovery = DockerDiscovery(network=network, labels=selector)

        # Act
        async with _subscription(discovery) as events:
            announced = await _silence(events)

        # Assert
        assert announced is None, f"announced {announced.type} for a server not up"

    @pytest.mark.asyncio
    async def test___aiter___with_container_restarted_while_severed(
        self, engine, network, selector, run
    ):
        """Test a worker container restarted while the Engine is cut off.

        Given:
            A subscriber that announced a serving worker container (no
            healthcheck) whose next run takes a minute to serve
        When:
            The proxy cuts every connection; meanwhile the container is
            restarted, and the Engine stays away longer than the margin the
            event stream resumes from; then the proxy listens again
        Then:
            It should yield worker-dropped for it: what the previous run
            said does not prove the new server up, so the listing after the
            gap reads the new run's output again
        """
        # Arrange
        container = await _serving_first_run_only(run, network)
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            added = await _next(events, "worker-added before the cut")

            # Act
            await engine.sever()
            await _adocker("restart", "--time", "0", container)
            # Past the resume margin, so no replayed event tells of the restart.
            await asyncio.sleep(_AWAY)
            await engine.restore()
            dropped = await _next(events, "worker-dropped after the restart")
            extra = await _silence(events)

        # Assert
        assert (added.type, added.metadata.uid) == ("worker-added", _uid(container))
        assert (dropped.type, dropped.metadata.uid) == (
            "worker-dropped",
            _uid(container),
        )
        assert extra is None, f"unexpected {extra.type} for {extra.metadata.uid}"

    @pytest.mark.asyncio
    async def test___aiter___with_container_restarted_and_logs_slow_after_a_gap(
        self, engine, network, selector, run
    ):
        """Test a restart inside a gap whose logs the listing cannot read in time.

        Given:
            A subscriber that announced a serving worker container (no
            healthcheck) whose next run takes a minute to serve
        When:
            The proxy cuts every connection; meanwhile the container is
            restarted; then the proxy listens again, but holds log reads back
            until after the listing that follows the gap
        Then:
            It should yield nothing while the reads are held, and
            worker-dropped once they are let through: a run the listing could
            not read in time is read afterwards, not taken on its previous
            run's word
        """
        # Arrange
        container = await _serving_first_run_only(run, network)
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            added = await _next(events, "worker-added before the cut")
            pending = asyncio.ensure_future(anext(events))
            try:
                # Act
                await engine.sever()
                await _adocker("restart", "--time", "0", container)
                # Past the resume margin, so no replayed event tells of the restart.
                await asyncio.sleep(_AWAY)
                engine.hold = re.compile(r"/logs\?.*follow=(0|false)")
                await engine.restore()
                restored = time.monotonic()
                # The event streams open once the listing's bounded read gave up.
                await engine.request(r"^GET /v[\d.]+/events\?", after=restored)
                while_held = pending.done()
                engine.released.set()
                async with asyncio.timeout(_TIMEOUT):
                    dropped = await pending
            finally:
                engine.released.set()
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

        # Assert
        assert (added.type, added.metadata.uid) == ("worker-added", _uid(container))
        assert not while_held, "announced before the new run was read"
        assert (dropped.type, dropped.metadata.uid) == (
            "worker-dropped",
            _uid(container),
        )

    @pytest.mark.asyncio
    async def test___aiter___with_relists_while_container_stops(
        self, engine, network, selector, run, monkeypatch
    ):
        """Test re-listing while a worker container serves its deregistration delay.

        Given:
            A subscriber that re-lists every half second, and an announced
            worker container that keeps serving 4 s after SIGTERM
            (``WOOL_DEREGISTER_DELAY``)
        When:
            It is stopped with ``docker stop``, and re-listed several times
            while it still runs
        Then:
            It should yield worker-dropped once, at the signal, and nothing
            after: a listing of the signalled run, still running, does not
            bring it back
        """
        # Arrange
        monkeypatch.setenv("WOOL_DOCKER_RESYNC_INTERVAL", "0.5")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        container = await run(network, "--env", "WOOL_DEREGISTER_DELAY=4")
        async with _subscription(discovery) as events:
            added = await _next(events, "worker-added before the stop")

            # Act
            stop = asyncio.ensure_future(_adocker("stop", "--time", "30", container))
            later: asyncio.Future[DiscoveryEvent] | None = None
            try:
                dropped = await _next(events, "worker-dropped at the signal")
                signalled = time.monotonic()
                later = asyncio.ensure_future(anext(events))
                await stop
                exited = time.monotonic()
                done, _ = await asyncio.wait({later}, timeout=_QUIET)
            finally:
                stop.cancel()
                if later is not None:
                    # Unwound before the subscription closes its generator.
                    later.cancel()
                    await asyncio.gather(later, return_exceptions=True)
            relists = [
                at
                for at, line in engine.requests
                if signalled <= at <= exited and "/containers/json" in line
            ]

        # Assert
        assert (added.type, added.metadata.uid) == ("worker-added", _uid(container))
        assert (dropped.type, dropped.metadata.uid) == (
            "worker-dropped",
            _uid(container),
        )
        assert len(relists) >= 3, f"only {len(relists)} listings while it stopped"
        assert not done, f"then {later.result().type} for {later.result().metadata.uid}"

    @pytest.mark.asyncio
    async def test___aiter___with_inspect_failing_once(
        self, engine, network, selector, run, monkeypatch
    ):
        """Test a container whose inspect after its start event fails once.

        Given:
            A subscriber (periodic re-list out of the picture) through a proxy
            that resets the first container inspect
        When:
            A worker container starts serving
        Then:
            It should still yield worker-added for it: the failed inspect is
            retried, not left to the next gap
        """
        # Arrange
        monkeypatch.setenv("WOOL_DOCKER_RESYNC_INTERVAL", "600")
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        started = time.monotonic()
        async with _subscription(discovery) as events:
            pending = asyncio.ensure_future(anext(events))
            await engine.request(r"^GET /v[\d.]+/events\?", after=started)
            engine.refuse = re.compile(r"^GET /v[\d.]+/containers/[0-9a-f]{64}/json")
            engine.refuse_once = True

            # Act
            container = await run(network, "--no-healthcheck")
            try:
                async with asyncio.timeout(_TIMEOUT):
                    added = await pending
            finally:
                pending.cancel()

        # Assert
        assert engine.refuse is None, "no inspect was refused"
        assert (added.type, added.metadata.uid) == ("worker-added", _uid(container))

    @pytest.mark.asyncio
    async def test___aiter___with_severed_engine_connection_and_no_change(
        self, engine, network, selector, run
    ):
        """Test that a cut with nothing changed meanwhile yields nothing.

        Given:
            A subscriber that discovered two serving worker containers
            through a proxy to the Engine.
        When:
            The proxy cuts every connection, refuses new ones for longer
            than the longest reconnect delay, then listens again.
        Then:
            It should re-establish its event stream and yield no event at
            all: nothing dropped, nothing added again.
        """
        # Arrange
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            for _ in range(2):
                await run(network)
            for _ in range(2):
                await _next(events, "worker-added before the cut")

            # Act
            await engine.sever()
            await asyncio.sleep(_AWAY)  # the Engine stays away meanwhile
            await engine.restore()
            restored = time.monotonic()
            back = await engine.request(r"^GET /v[\d.]+/events", after=restored)
            _log.info("event stream back %.3f s after restore", back - restored)
            extra = await _silence(events)

        # Assert
        assert extra is None, f"unexpected {extra.type} for {extra.metadata.uid}"

    @pytest.mark.asyncio
    async def test___aiter___with_severed_engine_at_start(
        self, engine, network, selector, run
    ):
        """Test iterating while the Engine is unreachable, then after it returns.

        Given:
            A serving worker container and a proxy to the Engine that has
            cut every connection and refuses new ones.
        When:
            A subscriber is iterated; then the proxy listens again and a new
            iteration starts.
        Then:
            The first iteration should raise EngineUnavailableError; the
            second should yield worker-added for the container.
        """
        # Arrange
        container = await run(network)
        await serving(container, timeout=_TIMEOUT)
        await engine.sever()
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )

        # Act
        with pytest.raises(EngineUnavailableError):
            async with _subscription(discovery) as events:
                await _next(events, "never: the Engine is unreachable")
        await engine.restore()
        async with _subscription(discovery) as events:
            added = await _next(events, "worker-added once the Engine is back")

        # Assert
        assert added.type == "worker-added"
        assert added.metadata.uid == _uid(container)

    @pytest.mark.asyncio
    async def test___aiter___with_worker_ready_while_severed(
        self, engine, network, selector, run
    ):
        """Test a container that starts serving while the Engine is cut off.

        Given:
            A subscriber whose first listing found two running worker
            containers: one serving, announced; one whose worker starts late
            (and that has no healthcheck), whose output it follows for the
            ready line.
        When:
            The proxy cuts every connection and refuses new ones; meanwhile
            the late worker prints its ready line; then the proxy listens
            again.
        Then:
            It should yield worker-added for the late container.
        """
        # Arrange
        late = await run(
            network,
            "--no-healthcheck",
            "--entrypoint",
            "sh",
            command=("-c", f"sleep {_LATE}; exec python3 -m wool_docker._entrypoint"),
        )
        prompt = await run(network)
        discovery = DockerDiscovery(
            network=network, labels=selector, docker_host=engine.url
        )
        async with _subscription(discovery) as events:
            # Announced from the same listing that started following `late`.
            first = await _next(events, "worker-added for the serving container")

            # Act
            await engine.sever()
            await serving(late, timeout=_TIMEOUT)
            await engine.restore()
            restored = time.monotonic()
            added = await _next(events, "worker-added for the late container")
            _log.info("worker-added %.3f s after restore", time.monotonic() - restored)

        # Assert
        assert first.metadata.uid == _uid(prompt)
        assert added.type == "worker-added"
        assert added.metadata.uid == _uid(late)


class TestEngineSelection:
    """The Engine is chosen the way the docker CLI chooses it."""

    @pytest.mark.asyncio
    async def test_engine_chosen_by_docker_context(
        self, engine, network, selector, run, tmp_path, monkeypatch
    ):
        """Test selecting the Engine with docker contexts.

        Given:
            A docker context (``docker context create``, in a config
            directory of this test) whose Engine is a proxy to the real one,
            and no ``DOCKER_HOST``
        When:
            It is selected by ``DOCKER_CONTEXT``, then as the CLI's current
            context (``docker context use``), then ``default`` is used again
        Then:
            wool-docker should connect to the context's Engine in the first
            two cases, and discover a worker through it, and to the default
            socket in the last
        """
        # Arrange
        from wool_docker import _native

        config = tmp_path / "docker-config"
        name = f"wdt-{uuid.uuid4().hex[:8]}"
        cli_env = {**os.environ, "DOCKER_CONFIG": str(config)}
        cli_env.pop("DOCKER_HOST", None)
        cli_env.pop("DOCKER_CONTEXT", None)

        def cli(*args: str) -> None:
            subprocess.run(
                ["docker", *args], env=cli_env, check=True, capture_output=True
            )

        cli("context", "create", name, "--docker", f"host={engine.url}")
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        container = await run(network)

        # Act
        monkeypatch.setenv("DOCKER_CONTEXT", name)
        by_variable = (await _native.engine_info())["host"]
        started = time.monotonic()
        async with _subscription(
            DockerDiscovery(network=network, labels=selector)
        ) as events:
            found = await _next(events, "worker-added through the context's Engine")
        monkeypatch.delenv("DOCKER_CONTEXT")
        cli("context", "use", name)
        by_current = (await _native.engine_info())["host"]
        cli("context", "use", "default")
        by_default = (await _native.engine_info())["host"]

        # Assert
        assert by_variable == engine.url
        assert found.metadata.uid == _uid(container)
        await engine.request(r"^GET /v[\d.]+/containers/json", after=started)
        assert by_current == engine.url
        assert by_default == "unix:///var/run/docker.sock"
