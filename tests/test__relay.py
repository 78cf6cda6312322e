"""The worker feed's relay, run as the owner runs it in a container: a
``python3 -I -S -c`` process with its stdio held by the test, which plays
the owner."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from wool_docker import _relay

pytestmark = pytest.mark.asyncio


class Owner:
    """The owner's end of a relay: its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout

    async def read(self) -> str:
        """The relay's next line, within a deadline."""
        async with asyncio.timeout(10):
            line = await self.stdout.readline()
        assert line.endswith(b"\n"), f"the relay ended: {line!r}"
        return line.decode().rstrip("\n")

    async def send(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        await self.stdin.drain()


@pytest_asyncio.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Owner, str]]:
    """A relay listening in ``tmp_path``, ready; it must end when its stdin does."""
    path = str(tmp_path / "feed.sock")
    source = Path(_relay.__file__).read_text()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        source,
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    owner = Owner(process)
    assert await owner.read() == "ready"
    yield owner, path
    owner.stdin.close()
    async with asyncio.timeout(10):
        code = await process.wait()
    assert code == 0, "the relay must end by itself, cleanly, when the owner goes"


async def test_relay_carries_a_connection_both_ways(relay):
    """A client's request reaches the owner on a numbered channel, the
    owner's lines reach the client, and a close ends the connection."""
    # Arrange
    owner, path = relay
    reader, writer = await asyncio.open_unix_connection(path)

    # Act
    writer.write(b'{"selector": {}}\n')
    opened = await owner.read()
    request = await owner.read()
    await owner.send('data 0 {"ok":true}')
    await owner.send('data 0 {"changes":[]}')
    await owner.send("close 0")

    # Assert
    assert opened == "open 0"
    assert request == 'data 0 {"selector": {}}'
    async with asyncio.timeout(10):
        assert await reader.readline() == b'{"ok":true}\n'
        assert await reader.readline() == b'{"changes":[]}\n'
        assert await reader.read() == b"", "closed by the owner"
    writer.close()


async def test_relay_tells_the_owner_when_a_client_hangs_up(relay):
    """A client that goes away closes its channel, and a second client gets
    a channel of its own."""
    # Arrange
    owner, path = relay
    _, first = await asyncio.open_unix_connection(path)
    assert await owner.read() == "open 0"

    # Act
    first.close()
    closed = await owner.read()
    _, second = await asyncio.open_unix_connection(path)
    opened = await owner.read()

    # Assert
    assert closed == "close 0"
    assert opened == "open 1"
    second.close()
    assert await owner.read() == "close 1"


async def test_relay_with_more_clients_than_the_owner_serves(relay):
    """Past ``MAX_CLIENTS`` connections, a client is hung up on at once and
    the owner hears nothing of it."""
    # Arrange
    owner, path = relay
    writers = []
    for n in range(_relay.MAX_CLIENTS):
        _, writer = await asyncio.open_unix_connection(path)
        writers.append(writer)
        assert await owner.read() == f"open {n}"

    # Act
    reader, extra = await asyncio.open_unix_connection(path)
    async with asyncio.timeout(10):
        hung_up = await reader.read()

    # Assert
    assert hung_up == b""
    writers[0].close()
    assert await owner.read() == "close 0", "the next line is no open of the extra"
    for writer in [extra, *writers[1:]]:
        writer.close()


async def test_relay_ignores_lines_for_channels_it_does_not_have(relay):
    """The owner's lines for a closed or unknown channel are dropped, and the
    relay carries on."""
    # Arrange
    owner, path = relay

    # Act
    await owner.send("data 7 {}")
    await owner.send("close 9")
    reader, writer = await asyncio.open_unix_connection(path)

    # Assert
    assert await owner.read() == "open 0"
    writer.close()
    assert await owner.read() == "close 0"


async def test_relay_drops_a_client_that_does_not_read(relay):
    """A client that takes nothing while the owner sends it more than
    ``MAX_BUFFERED`` is closed, and the owner told; the relay carries on."""
    # Arrange
    owner, path = relay
    _, writer = await asyncio.open_unix_connection(path)
    assert await owner.read() == "open 0"
    line = "x" * (128 * 1024)

    # Act
    for _ in range(2 * _relay.MAX_BUFFERED // len(line)):
        await owner.send(f"data 0 {line}")
    dropped = await owner.read()
    _, second = await asyncio.open_unix_connection(path)

    # Assert
    assert dropped == "close 0"
    assert await owner.read() == "open 1"
    writer.close()
    second.close()
    assert await owner.read() == "close 1"


async def test_relay_on_one_socket_for_both_directions(tmp_path):
    """As a Swarm task runs it: standard input and output are one socket
    (its lifeline connection), made non-blocking by the relay for both."""
    # Arrange
    path = str(tmp_path / "feed.sock")
    ours, theirs = socket.socketpair()
    source = Path(_relay.__file__).read_text()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", "-c", source, path, stdin=theirs, stdout=theirs
    )
    theirs.close()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        async with asyncio.timeout(10):
            assert await reader.readline() == b"ready\n"
            client_reader, client = await asyncio.open_unix_connection(path)
            client.write(b'{"selector": {}}\n')

            # Act
            opened = await reader.readline()
            request = await reader.readline()
            writer.write(b'data 0 {"ok":true}\n')
            answer = await client_reader.readline()

        # Assert
        assert opened == b"open 0\n"
        assert request == b'data 0 {"selector": {}}\n'
        assert answer == b'{"ok":true}\n'
        client.close()
    finally:
        writer.close()
        async with asyncio.timeout(10):
            assert await process.wait() == 0
