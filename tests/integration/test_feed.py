"""Attacks on what a routine in a `DockerWorker` container can reach.

Routines are untrusted code. With the default ``engine_access="feed"`` the
only thing of the host a worker container reaches is its owner's worker feed:
a socket serving the worker records of the owner's own discovery scopes. Each
test here runs an attack as a routine inside a worker container, as a routine
submitted by anyone would, and checks what the attacker got and that nothing
on the Engine changed: no container created, started, killed or entered.

The HTTP attacks are the ones that turned the first version's read-only
Engine proxy into root on the host; the feed speaks no HTTP, so each must be
refused before anything reaches the Engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from typing import Final

import pytest
import wool

from tests.integration import attack
from tests.integration.conftest import Case
from wool_docker import DockerDiscovery
from wool_docker.pytest import NAME_PREFIX
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL
from wool_docker.pytest import DockerCli

SMUGGLED = f"{NAME_PREFIX}-smuggled"
"""The container every smuggling payload tries to create."""


def _create(image: str) -> bytes:
    """The body of a request creating a privileged container that mounts the
    host's ``/`` (labelled for this run, so the leak check would catch it)."""
    return json.dumps(
        {
            "Image": image,
            "Cmd": ["true"],
            "Labels": {RUN_LABEL: RUN_ID},
            "HostConfig": {"Privileged": True, "Binds": ["/:/host"]},
        }
    ).encode()


def _post(image: str, eol: bytes) -> bytes:
    body = _create(image)
    return eol.join(
        [
            f"POST /v1.41/containers/create?name={SMUGGLED} HTTP/1.1".encode(),
            b"Host: x",
            b"Content-Type: application/json",
            f"Content-Length: {len(body)}".encode(),
            b"",
            body,
        ]
    )


def _attacks(image: str) -> dict[str, bytes]:
    """Every malformed, ambiguous or smuggling request tried, by name."""
    post = _post(image, b"\r\n")
    return {
        "bare-LF smuggling": b"GET /_ping HTTP/1.1\nHost: x\n\n"
        + _post(image, b"\n")
        + b"\r\n\r\n",
        "CRLF pipelining": b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n" + post,
        "obs-fold": b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-A: a\r\n " + post,
        "absolute-form": b"GET http://docker/v1.41/containers/json HTTP/1.1\r\n"
        b"Host: x\r\n\r\n",
        "authority-form": b"CONNECT docker:80 HTTP/1.1\r\nHost: docker:80\r\n\r\n",
        "%2e%2e in the path": b"GET /v1.41/containers/%2e%2e/containers/create"
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "%2f in the path": b"GET /v1.41/containers%2fjson HTTP/1.1\r\nHost: x\r\n\r\n",
        "double encoding": b"GET /v1.41/containers/%252e%252e/secrets HTTP/1.1\r\n"
        b"Host: x\r\n\r\n",
        "body on GET": b"GET /_ping HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {len(post)}\r\n\r\n".encode()
        + post,
        "body on HEAD": b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {len(post)}\r\n\r\n".encode()
        + post,
        "chunked body on GET": b"GET /_ping HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(post):x}\r\n".encode()
        + post
        + b"\r\n0\r\n\r\n",
        "conflicting lengths": b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0"
        b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + post,
        "upgrade": b"GET /v1.41/containers/x/attach/ws HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "NUL in the target": b"GET /_ping\x00/../containers/create HTTP/1.1\r\n\r\n",
        "oversized head": b"GET /_ping HTTP/1.1\r\nX-Pad: " + b"a" * (1 << 20),
        "feed request then HTTP": b'{"selector": {"wool.worker": "true"}, '
        b'"network": null}\n' + post,
        "feed request with an Engine path": b'{"selector": {"wool.worker": "true"}, '
        b'"network": null, "path": "/containers/create"}\n',
        "feed request for another scope": b'{"selector": '
        b'{"com.docker.compose.project": ""}, "network": null}\n',
    }


def _engine_changes(docker: DockerCli, since: float) -> list[dict[str, Any]]:
    """What happened on the Engine since ``since`` (Unix time) to objects of
    this run: every attack here aims at them (the smuggled container carries
    this run's label and name), and other runs on a shared Engine make noise
    of their own."""
    until = time.time() + 0.5
    listing = docker.run(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--format",
        "{{json .}}",
    )
    events = [json.loads(line) for line in listing.stdout.splitlines() if line]

    def ours(event: dict[str, Any]) -> bool:
        attributes = event.get("Actor", {}).get("Attributes", {})
        return attributes.get(RUN_LABEL) == RUN_ID or attributes.get(
            "name", ""
        ).startswith(NAME_PREFIX)

    return [e for e in events if ours(e)]


def _smuggled(docker: DockerCli) -> list[str]:
    """Containers a smuggled request may have created."""
    listing = docker.run("ps", "-aq", "--filter", f"name={SMUGGLED}")
    return listing.stdout.split()


def _refused(reply: bytes) -> bool:
    """Whether the feed answered with one error line and hung up."""
    lines = reply.splitlines()
    return len(lines) == 1 and "error" in json.loads(lines[0])


async def _feed_source(case: Case, docker: DockerCli) -> str:
    """The host path of the feed socket mounted into the test's worker."""
    (container,) = case.containers()
    document = await docker.inspect(container)
    for mount in document["Mounts"]:
        if mount["Destination"] == attack.FEED:
            return mount["Source"]
    pytest.fail(f"no feed is mounted into {container}: {document['Mounts']}")


@pytest.fixture
def foreign(docker: DockerCli, image: str) -> Iterator[Any]:
    """Starts containers that are not the owner's; removes them afterwards."""
    names: list[str] = []

    def start(suffix: str, *args: str) -> subprocess.CompletedProcess[str]:
        name = f"{NAME_PREFIX}-{suffix}"
        names.append(name)
        return docker.run(
            "run", "--name", name, "--label", f"{RUN_LABEL}={RUN_ID}", *args
        )

    try:
        yield start
    finally:
        docker.remove_containers(*names)


class TestWorkerFeedAttacks:
    """Requests a routine can send to the only socket it reaches."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", list(_attacks("image")))
    async def test_feed_with_http_and_malformed_requests(self, case, docker, name):
        """Test each request smuggling and parsing attack against the feed.

        Given:
            A pool of one DockerWorker with the default engine access
        When:
            A routine writes the attack's bytes to the socket it can reach
        Then:
            It should get one error line and a hang-up, and nothing on the
            Engine should change (no container created, started or killed)
        """
        # Arrange
        payload = _attacks(case.image)[name]
        async with case.pool("docker", spawn=1):
            since = time.time()

            # Act
            reply = await attack.send(payload)

            changes = _engine_changes(docker, since)

        # Assert
        assert _refused(reply), reply[:300]
        assert not changes
        assert not _smuggled(docker)

    @pytest.mark.asyncio
    async def test_feed_with_a_slow_request(self, case, docker):
        """Test a request sent a byte every half second.

        Given:
            A pool of one DockerWorker
        When:
            A routine sends a request slower than the feed's 5 s allowance
        Then:
            The feed should give up on it with an error, not wait for ever
        """
        # Arrange
        async with case.pool("docker", spawn=1):
            # Act
            reply = await attack.send(b'{"selector": {"wool.worker": "true"}}\n', 0.5)

        # Assert
        assert _refused(reply), reply
        assert b"no request within" in reply

    @pytest.mark.asyncio
    async def test_feed_with_500_connections(self, case, docker):
        """Test 500 connections held open at once by one routine.

        Given:
            A pool of one DockerWorker
        When:
            A routine opens 500 connections to the feed and sends nothing
        Then:
            Every connection should be refused or timed out by the owner, and
            a real subscription should still be served afterwards
        """
        # Arrange
        request = json.dumps({"selector": case.labels, "network": case.network})
        async with case.pool("docker", spawn=1):
            since = time.time()

            # Act
            replies = await attack.flood(500)
            after = await attack.lines(request.encode() + b"\n", 2)

            changes = _engine_changes(docker, since)

        # Assert
        assert all(_refused(reply) for reply in replies), {
            r for r in replies if not _refused(r)
        }
        assert sum(b"connections open already" in r for r in replies) >= 400
        assert json.loads(after[0]) == {"ok": True}
        assert json.loads(after[1])["changes"][0]["kind"] == "added"
        assert not changes


class TestWorkerFeedData:
    """What a routine can learn through the feed, and what not."""

    @pytest.mark.asyncio
    async def test_feed_with_the_pools_scope(self, case, docker):
        """Test the one request the feed serves: the owner's own scope.

        Given:
            A pool of one DockerWorker discovered with DockerDiscovery
        When:
            A routine asks the feed for the pool's scope
        Then:
            It should receive the worker's record and nothing but the record's
            fields: no environment, mounts or host configuration
        """
        # Arrange
        request = json.dumps({"selector": case.labels, "network": case.network})
        async with case.pool("docker", spawn=1):
            (container,) = case.containers()

            # Act
            ok, batch = await attack.lines(request.encode() + b"\n", 2)

        # Assert
        assert json.loads(ok) == {"ok": True}
        (change,) = json.loads(batch)["changes"]
        assert change["kind"] == "added"
        assert set(change["record"]) == {
            "uid",
            "address",
            "version",
            "tags",
            "extra",
            "secure",
            "identity",
            "options",
            "pid",
            "container_id",
            "container_name",
            "network",
        }
        assert change["record"]["container_id"] == container

    @pytest.mark.asyncio
    async def test_feed_with_another_containers_secrets(self, case, docker, foreign):
        """Test reading an unrelated container's environment and logs.

        Given:
            An unrelated container on the host whose environment and output
            hold a secret, and a pool of one DockerWorker
        When:
            A routine tries the Engine's inspect and logs paths and a feed
            scope selecting that container, and looks at its own surroundings
        Then:
            The secret should appear nowhere; the routine should have no
            Engine socket, no ``DOCKER_HOST`` and no mount of the Engine
        """
        # Arrange
        secret = f"wdt-secret-{RUN_ID}"
        foreign(
            "secret",
            "-d",
            "-e",
            f"WDT_SECRET={secret}",
            "--entrypoint",
            "sh",
            case.image,
            "-c",
            f"echo {secret}; exec sleep 600",
        )
        name = f"{NAME_PREFIX}-secret"
        probes = [
            f"GET /v1.41/containers/{name}/json HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            f"GET /v1.41/containers/{name}/logs?stdout=1 HTTP/1.1\r\n\r\n".encode(),
            json.dumps({"selector": {RUN_LABEL: RUN_ID}, "network": None}).encode()
            + b"\n",
        ]
        async with case.pool("docker", spawn=1):
            # Act
            replies = [await attack.send(probe) for probe in probes]
            seen = await attack.surroundings()

        # Assert
        assert all(_refused(reply) for reply in replies), replies
        assert not any(secret.encode() in reply for reply in replies)
        assert secret not in json.dumps(seen)
        assert "DOCKER_HOST" not in seen["env"]
        assert seen["env"]["WOOL_DOCKER_FEED"] == attack.FEED
        assert seen["docker_sock"] is False
        assert "docker.sock" not in seen["mounts"]

    @pytest.mark.asyncio
    async def test_subscriber_with_another_scope_in_a_container(self, case):
        """Test a nested DockerDiscovery of a scope the owner does not serve.

        Given:
            A pool of one DockerWorker
        When:
            A routine iterates a DockerDiscovery of other labels
        Then:
            It should fail with WorkerFeedError naming the refused scope
        """
        # Arrange
        async with case.pool("docker", spawn=1):
            # Act
            outcome = await attack.subscribe_elsewhere({"wdt.other": RUN_ID})

        # Assert
        assert outcome.startswith("WorkerFeedError:"), outcome
        assert f"wdt.other={RUN_ID}" in outcome

    @pytest.mark.asyncio
    async def test_subscriber_built_in_a_container(self, case):
        """Test a DockerDiscovery that a routine builds itself, default labels.

        Given:
            A pool of one DockerWorker found by a default DockerDiscovery
        When:
            A routine builds ``DockerDiscovery(network=...)`` and iterates it
        Then:
            It should see the pool's worker: its default owner filter is the
            owner's (whose scopes the feed serves), not the container's own
        """
        # Arrange
        worker = case.worker()
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kw: worker,
            discovery=DockerDiscovery(network=case.network),
        )
        async with pool:
            # Act
            seen = await attack.first_worker_here(case.network)

        # Assert
        assert seen == str(worker.uid), seen


class TestWorkerFeedRelay:
    """The feed through its relay (what an owner gets where the Engine shares
    no files with it), forced on this machine's Engine."""

    @pytest.fixture(autouse=True)
    def relay(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WOOL_DOCKER_FEED_RELAY", "1")

    @pytest.mark.asyncio
    async def test_subscriptions_come_and_go_through_the_relay(self, case):
        """Test many subscriptions, one after another, from one container.

        Given:
            A pool of one DockerWorker whose feed goes through the relay
        When:
            A routine builds and leaves a ``DockerDiscovery`` 48 times, one
            after another (three times the connections a container may hold
            at once)
        Then:
            Every one should see the pool's worker: each connection ends for
            the owner when its client leaves
        """
        # Arrange
        worker = case.worker()
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kw: worker,
            discovery=DockerDiscovery(network=case.network),
        )
        async with pool:
            # Act
            seen = await attack.first_worker_again_and_again(case.network, 48)

        # Assert
        assert seen == [str(worker.uid)] * 48, seen

    @pytest.mark.asyncio
    async def test_feed_with_200_connections_through_the_relay(self, case, docker):
        """Test 200 connections held open at once by one routine, via the relay.

        Given:
            A pool of one DockerWorker whose feed goes through the relay
        When:
            A routine opens 200 connections to the feed and sends nothing
        Then:
            Each should be hung up on (past the container's 16, by the relay
            at once; the 16, by the owner's request timeout), nothing on the
            Engine should change, and a real subscription should be served
            afterwards
        """
        # Arrange
        request = json.dumps({"selector": case.labels, "network": case.network})
        async with case.pool("docker", spawn=1):
            since = time.time()

            # Act
            replies = await attack.flood(200)
            after = await attack.lines(request.encode() + b"\n", 2)

            changes = _engine_changes(docker, since)

        # Assert
        assert b"<no hang-up>" not in replies
        assert sum(b"no request within" in r for r in replies) <= 16
        assert json.loads(after[0]) == {"ok": True}
        assert json.loads(after[1])["changes"][0]["kind"] == "added"
        assert not changes


class TestWorkerFeedAccess:
    """Who can reach the feed at all."""

    @pytest.mark.asyncio
    async def test_feed_from_a_container_of_another_owner(self, case, docker, foreign):
        """Test a container that is not the owner's with the socket mounted.

        Given:
            A pool of one DockerWorker, and another container that mounts the
            owner's feed socket
        When:
            That container sends the pool's own scope
        Then:
            The owner should refuse it: it did not start that container
        """
        # Arrange
        request = json.dumps({"selector": case.labels, "network": case.network})
        probe = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(15)\n"
            "s.connect('/feed.sock')\n"
            "try:\n"
            f"    s.sendall({request!r}.encode() + b'\\n')\n"
            "except BrokenPipeError:\n"
            "    pass  # refused before the request was read\n"
            "print(s.recv(65536).decode())\n"
        )
        async with case.pool("docker", spawn=1):
            source = await _feed_source(case, docker)

            # Act
            result = foreign(
                "intruder",
                "--rm",
                "-v",
                f"{source}:/feed.sock",
                "--entrypoint",
                "python3",
                case.image,
                "-c",
                probe,
            )

        # Assert
        assert "was not started by this owner" in result.stdout, result.stdout

    @pytest.mark.asyncio
    async def test_feed_from_another_local_user(self, case, docker):
        """Test another user of the host connecting to the feed socket.

        Given:
            A pool of one DockerWorker, and a local user created for the test
        When:
            That user connects to the feed's socket on the host
        Then:
            The connection should be refused by the file system: the socket's
            directory is only its owner's (0700)
        """
        # Arrange
        user = f"wdt{RUN_ID}"
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
        try:
            async with case.pool("docker", spawn=1):
                source = await _feed_source(case, docker)
                directory = os.stat(os.path.dirname(source))
                probe = (
                    "import socket\n"
                    "try:\n"
                    f"    socket.socket(socket.AF_UNIX).connect({source!r})\n"
                    "    print('connected')\n"
                    "except OSError as e:\n"
                    "    print(type(e).__name__)\n"
                )

                # Act
                result = subprocess.run(
                    ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
                    + ["python3", "-c", probe],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                )
        finally:
            subprocess.run(["userdel", user], check=True, capture_output=True)

        # Assert
        assert result.stdout.strip() == "PermissionError"
        assert stat.S_IMODE(directory.st_mode) == 0o700
        assert directory.st_uid == os.getuid()


_OWNER: Final[str] = """
import asyncio, json, sys
from wool_docker import DockerWorker

async def main():
    print("waiting", flush=True)
    sys.stdin.readline()
    worker = DockerWorker(**json.loads(sys.argv[1]))
    await worker.start()
    print(worker.container, flush=True)
    sys.stdin.readline()
    await worker.stop()

asyncio.run(main())
"""
"""An owner of its own: waits for a line, starts a worker (and with it the
feed), prints its container id, waits for a line, stops it."""


async def _feed_sources(docker: DockerCli, label: str) -> set[str]:
    """The feed sockets mounted into the running containers carrying ``label``."""
    listing = await docker.arun("ps", "-q", "--no-trunc", "--filter", f"label={label}")
    sources = set()
    for container in listing.split():
        document = await docker.inspect(container)
        for mount in document["Mounts"]:
            if mount["Destination"] == attack.FEED:
                sources.add(mount["Source"])
    return sources


class TestWorkerFeedLifetime:
    """The feed serves what is live in its owner, and no more."""

    @pytest.mark.asyncio
    async def test_feed_after_the_owners_last_subscription_closes(self, case):
        """Test a feed connection whose scope the owner stops subscribing to.

        Given:
            A pool of one DockerWorker, and two subscriptions of the owner to
            another scope, to which a routine holds a feed connection
        When:
            The owner closes one subscription, then the other, then
            subscribes again
        Then:
            The scope should be served while one is open; once none is, the
            routine's connection should get an error line and a hang-up and a
            new connection should be refused; the new subscription should
            serve it again
        """
        # Arrange
        from wool_docker import _native

        labels = {RUN_LABEL: RUN_ID, "wdt.revoked": case.id}
        request = json.dumps({"selector": labels, "network": None}).encode() + b"\n"
        async with case.pool("docker", spawn=1):
            first = await _native.subscribe(labels, None, None)
            second = await _native.subscribe(labels, None, None)
            try:
                held = await attack.hold(request)

                # Act
                second.close()
                one_left = await attack.lines(request, 1)
                first.close()
                ended = await attack.held_reply()
                refused = await attack.send(request)
                again = await _native.subscribe(labels, None, None)
                try:
                    renewed = await attack.lines(request, 1)
                finally:
                    again.close()
            finally:
                first.close()
                second.close()

        # Assert
        assert json.loads(held) == {"ok": True}
        assert json.loads(one_left[0]) == {"ok": True}
        assert _refused(ended), ended
        assert "no longer subscribes to" in json.loads(ended)["error"]
        assert _refused(refused), refused
        assert b"serves only the scopes it subscribes to" in refused
        assert json.loads(renewed[0]) == {"ok": True}

    @pytest.mark.asyncio
    async def test_feed_with_a_slow_reader(self, case, docker):
        """Test a routine reading its feed connection slower than it changes.

        Given:
            A pool of one DockerWorker, the owner subscribed to another scope,
            and a routine holding a feed connection to it
        When:
            Ten containers of ~500 KB records each join the scope at once
            while the routine reads 128 KB a second (fast enough to take any
            batch within the 30 s write timeout, slower than they come even
            when a loaded Engine spreads the ten starts over 30 s)
        Then:
            The owner should hang up on it before it has read half of the
            ~5 MB of changes, instead of queueing them for it
        """
        # Arrange
        from wool_docker import _native

        labels = {RUN_LABEL: RUN_ID, "wdt.flood": case.id}
        request = json.dumps({"selector": labels, "network": None}).encode() + b"\n"
        pad = "x" * 50_000
        record = {
            "wool.address": "127.0.0.1:1",
            "wool.extra": json.dumps({"pad": pad}),
            "wool.options": json.dumps({"pad": pad}),
            "wool.tags": pad,
            "wool.identity": pad,
            "wool.version": pad,
            RUN_LABEL: RUN_ID,
            "wdt.flood": case.id,
        }
        names = [f"{NAME_PREFIX}-flood-{i}" for i in range(10)]
        try:
            for name in names:
                docker.run(
                    "create",
                    "--name",
                    name,
                    *(f"--label={k}={v}" for k, v in record.items()),
                    "--entrypoint",
                    "sh",
                    case.image,
                    "-c",
                    "echo 'wool-docker ready {}'; exec sleep 600",
                )
            async with case.pool("docker", spawn=1):
                subscription = await _native.subscribe(labels, None, None)
                try:
                    held = await attack.hold(request)

                    # Act
                    reading = asyncio.ensure_future(attack.held_reply(131072, 1.0, 120))
                    await docker.arun("start", *names)
                    reply = await reading
                finally:
                    subscription.close()
        finally:
            docker.remove_containers(*names)

        # Assert
        assert json.loads(held) == {"ok": True}
        assert not reply.endswith(b"<no hang-up>"), len(reply)
        assert len(reply) < 10 * 500_000 // 2, len(reply)

    @pytest.mark.asyncio
    async def test_feed_with_its_directory_name_taken(self, case, docker):
        """Test another user planting a directory where the feed would go.

        Given:
            A sticky, world-writable temp directory (as /tmp is) where another
            user made the directory an owner's feed used to be named after (its
            pid), and an owner process using that temp directory
        When:
            The owner starts a worker with the feed
        Then:
            The worker should start with a feed in a fresh 0700 directory of
            the owner's, the planted one left alone; at exit the owner should
            remove its directory
        """
        # Arrange
        shared = tempfile.mkdtemp()
        os.chmod(shared, 0o1777)
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env["TMPDIR"] = shared
        options = json.dumps(case.options(log_output=False))
        owner = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OWNER,
            options,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert owner.stdin is not None and owner.stdout is not None
        try:
            async with asyncio.timeout(120):
                assert await owner.stdout.readline() == b"waiting\n"
                planted = os.path.join(shared, f"wool-docker-feed-{owner.pid}")
                os.mkdir(planted, 0o700)
                os.chown(planted, 65534, 65534)

                # Act
                owner.stdin.write(b"\n")
                container = (await owner.stdout.readline()).decode().strip()
                sources = await _feed_sources(docker, case.label)
                directory = os.stat(os.path.dirname(min(sources, default="/")))
                owner.stdin.write(b"\n")
                await owner.wait()
            left = os.listdir(shared)
        finally:
            if owner.returncode is None:
                owner.kill()
                await owner.wait()
            shutil.rmtree(shared)

        # Assert
        assert owner.returncode == 0
        assert container, "the owner started no worker"
        (source,) = sources
        name = os.path.basename(os.path.dirname(source))
        assert os.path.dirname(os.path.dirname(source)) == shared
        assert name.startswith(f"wool-docker-feed-{owner.pid}-"), name
        assert stat.S_IMODE(directory.st_mode) == 0o700
        assert directory.st_uid == os.getuid()
        assert left == [os.path.basename(planted)]

    @pytest.mark.asyncio
    async def test_feed_after_its_socket_vanished(self, case, docker):
        """Test starting a worker after the feed's socket file was removed.

        Given:
            An owner whose feed served a pool, then lost its socket file (a
            temp-directory cleaner, say)
        When:
            The owner starts another pool
        Then:
            Its worker should get a working feed on a new socket, and nothing
            (no directory made by the daemon as root) should appear where
            the old socket was
        """
        # Arrange
        request = json.dumps({"selector": case.labels, "network": case.network})
        async with case.pool("docker", spawn=1):
            (source,) = await _feed_sources(docker, case.label)
        os.unlink(source)

        # Act
        try:
            async with case.pool("docker", spawn=1):
                renewed = await _feed_sources(docker, case.label)
                lines = await attack.lines(request.encode() + b"\n", 2)
            made = os.path.lexists(source)
        finally:
            if os.path.isdir(source):
                os.rmdir(source)

        # Assert
        assert not made, f"{source} was made by the daemon"
        assert len(renewed) == 1 and source not in renewed, renewed
        assert json.loads(lines[0]) == {"ok": True}
        assert json.loads(lines[1])["changes"][0]["kind"] == "added"
