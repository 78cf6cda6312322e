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

One thread and `selectors`, not asyncio: the relay starts in every worker,
and importing asyncio would triple its start-up.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
import sys

MAX_LINE = 16 * 1024 * 1024
"""The longest line carried either way: the feed's largest batch."""

MAX_CLIENTS = 16
"""Connections served at once: the owner's limit per container."""

MAX_BUFFERED = 4 * 1024 * 1024
"""Bytes held for one client that reads too slowly; past it, it is closed."""

CLOSE_WAIT = 1.0
"""Seconds a client closed by the owner has to take what is left for it."""


class Client:
    """One connection in the container, and what is pending either way."""

    def __init__(self, n: int, connection: socket.socket) -> None:
        self.n = n
        self.connection = connection
        self.received = b""
        self.pending = b""


class Relay:
    """The relay's clients, its listener and the owner's stdio."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}
        self.next_id = 0
        self.from_owner = b""
        self.selector.register(listener, selectors.EVENT_READ)
        os.set_blocking(0, False)
        self.selector.register(0, selectors.EVENT_READ)

    def send(self, line: bytes) -> None:
        """A line to the owner; waits for the owner to take it."""
        data = memoryview(line + b"\n")
        while data:
            try:
                data = data[os.write(1, data) :]
            except BlockingIOError:
                # Standard output may share standard input's non-blocking
                # socket (a Swarm task's lifeline).
                select.select([], [1], [])

    def run(self) -> None:
        self.send(b"ready")
        while True:
            for key, events in self.selector.select():
                if key.fileobj is self.listener:
                    self.accept()
                elif key.fileobj == 0:
                    if not self.read_owner():
                        return
                else:
                    client = key.data
                    if events & selectors.EVENT_WRITE:
                        self.flush(client)
                    if events & selectors.EVENT_READ and client.n in self.clients:
                        self.read_client(client)

    def accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except BlockingIOError:
            return
        if len(self.clients) >= MAX_CLIENTS:
            connection.close()
            return
        connection.setblocking(False)
        client = Client(self.next_id, connection)
        self.next_id += 1
        self.clients[client.n] = client
        self.selector.register(connection, selectors.EVENT_READ, client)
        self.send(b"open %d" % client.n)

    def read_owner(self) -> bool:
        """What the owner sent; whether it is still there."""
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.from_owner += data
        *lines, self.from_owner = self.from_owner.split(b"\n")
        for line in lines:
            self.deliver(line)
        return len(self.from_owner) <= MAX_LINE + 64

    def deliver(self, line: bytes) -> None:
        verb, _, rest = line.partition(b" ")
        tag, _, payload = rest.partition(b" ")
        client = self.clients.get(int(tag)) if tag.isdigit() else None
        if client is None:
            return
        if verb == b"data":
            client.pending += payload + b"\n"
            if len(client.pending) > MAX_BUFFERED:
                self.drop(client, tell=True)
                return
            self.flush(client)
        elif verb == b"close":
            self.drop(client, tell=False)

    def flush(self, client: Client) -> None:
        try:
            sent = client.connection.send(client.pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.drop(client, tell=True)
            return
        client.pending = client.pending[sent:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.pending else 0)
        self.selector.modify(client.connection, events, client)

    def read_client(self, client: Client) -> None:
        try:
            data = client.connection.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client, tell=True)
            return
        client.received += data
        *lines, client.received = client.received.split(b"\n")
        for line in lines:
            self.send(b"data %d %s" % (client.n, line))
        if len(client.received) > MAX_LINE:
            self.drop(client, tell=True)

    def drop(self, client: Client, tell: bool) -> None:
        """End a client's connection; ``tell``: the owner did not ask for it."""
        del self.clients[client.n]
        self.selector.unregister(client.connection)
        if client.pending and not tell:
            # The owner's last lines (an error, say) before it hung up.
            client.connection.settimeout(CLOSE_WAIT)
            try:
                client.connection.sendall(client.pending)
            except OSError:
                pass
        client.connection.close()
        if tell:
            self.send(b"close %d" % client.n)


def main(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.setblocking(False)
    try:
        Relay(listener).run()
    except BrokenPipeError:
        # The owner is gone.
        pass


if __name__ == "__main__":
    main(sys.argv[1])
