"""The worker feed's relay: the feed's socket inside a container, carried to
its owner over the relay's own standard input and output.

An owner that shares no files with its Engine (a remote or ssh:// Engine, an
owner in a container, Docker Desktop, rootless Docker) cannot bind-mount its
feed socket into its workers. It runs this program in each of them instead
(``docker exec -i``, or the entry point for a Swarm task), sending the source
itself, so it needs nothing of the image but ``python3`` and its standard
library. The relay listens on the feed's path in the container and carries
each connection to the owner as a numbered channel, one line at a time::

    relay -> owner   ready | open N | data N <line> | close N
    owner -> relay   data N <line> | close N

Lines are feed lines (JSON, never a newline inside). The owner serves each
channel as a connection from this container, with the feed's own limits;
the relay only bounds what it holds for its clients, and ends when its
standard input ends (the owner is gone).
"""

from __future__ import annotations

import asyncio
import os
import sys

MAX_LINE = 16 * 1024 * 1024
"""The longest line carried either way: the feed's largest batch."""

MAX_CLIENTS = 16
"""Connections served at once: the owner's limit per container."""

MAX_BUFFERED = 4 * 1024 * 1024
"""Bytes held for one client that reads too slowly; past it, it is closed."""


class Relay:
    """The relay's clients and the owner's stream they share."""

    def __init__(self, out: asyncio.StreamWriter) -> None:
        self.out = out
        self.clients: dict[int, asyncio.StreamWriter] = {}
        self.next_id = 0

    async def send(self, line: bytes) -> None:
        self.out.write(line + b"\n")
        await self.out.drain()

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(self.clients) >= MAX_CLIENTS:
            writer.close()
            return
        n = self.next_id
        self.next_id += 1
        self.clients[n] = writer
        tag = str(n).encode()
        try:
            await self.send(b"open " + tag)
            while line := await reader.readline():
                if not line.endswith(b"\n"):
                    break
                await self.send(b"data " + tag + b" " + line.rstrip(b"\n"))
        except (ValueError, ConnectionError):
            # A line past the limit, or a client gone: the channel ends.
            pass
        finally:
            if self.clients.pop(n, None) is not None:
                writer.close()
                await self.send(b"close " + tag)

    def deliver(self, line: bytes) -> None:
        verb, _, rest = line.partition(b" ")
        tag, _, payload = rest.partition(b" ")
        n = int(tag)
        writer = self.clients.get(n)
        if writer is None:
            return
        if verb == b"data":
            writer.write(payload + b"\n")
            if writer.transport.get_write_buffer_size() <= MAX_BUFFERED:
                return
        # `close`, or a client too far behind.
        del self.clients[n]
        writer.close()


async def main(path: str) -> None:
    loop = asyncio.get_running_loop()
    owner = asyncio.StreamReader(limit=MAX_LINE + 64)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(owner), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    relay = Relay(asyncio.StreamWriter(transport, protocol, None, loop))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = await asyncio.start_unix_server(relay.serve, path, limit=MAX_LINE)
    await relay.send(b"ready")
    async with server:
        while line := await owner.readline():
            relay.deliver(line.rstrip(b"\n"))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
