"""Tests for `wool_docker._entrypoint.lifeline`: a Swarm task's stdin, over TCP
from its owner. The owner is a listening socket on 127.0.0.1, and a pipe's
read end stands in for the descriptor the connection replaces (never the
real fd 0)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from wool_docker._entrypoint import lifeline
from wool_docker._entrypoint.config import ConfigError

TOKEN = "0123456789abcdef0123456789abcdef"
"""A token as the owner makes them (32 hex digits)."""


@pytest.fixture
def owner() -> Iterator[socket.socket]:
    """The owner's lifeline listener, on a free port of 127.0.0.1."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    yield listener
    listener.close()


def _environ(listener: socket.socket) -> dict[str, str]:
    """An environment naming `listener` and the token."""
    port = listener.getsockname()[1]
    return {
        lifeline.ADDRESS_VARIABLE: f"127.0.0.1:{port}",
        lifeline.TOKEN_VARIABLE: TOKEN,
        "WOOL_PORT": "50051",
    }


def _read_line(connection: socket.socket) -> bytes:
    """One line from `connection`, newline included."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_attach_without_address():
    """Test a task that was given no lifeline (a plain container).

    Given:
        An environment without ``WOOL_DOCKER_LIFELINE``
    When:
        `attach` is called
    Then:
        It should return ``False`` and leave the environment as it was
    """
    # Arrange
    environ = {"WOOL_PORT": "50051"}

    # Act
    attached = lifeline.attach(environ, stdin=-1)

    # Assert
    assert attached is False
    assert environ == {"WOOL_PORT": "50051"}


def test_attach_with_empty_address():
    """Test an empty lifeline variable.

    Given:
        ``WOOL_DOCKER_LIFELINE`` set to the empty string
    When:
        `attach` is called
    Then:
        It should return ``False``, as if unset
    """
    # Act
    attached = lifeline.attach({lifeline.ADDRESS_VARIABLE: ""}, stdin=-1)

    # Assert
    assert attached is False


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", ":5000", "127.0.0.1:", "127.0.0.1:port", "127.0.0.1:50a1"],
    ids=["no-port", "no-host", "empty-port", "named-port", "bad-port"],
)
def test_attach_with_malformed_address(address):
    """Test a lifeline address that is not ``host:port``.

    Given:
        ``WOOL_DOCKER_LIFELINE`` without a host or a numeric port, and a token
    When:
        `attach` is called
    Then:
        It should raise `ConfigError` naming ``WOOL_DOCKER_LIFELINE`` and the
        address
    """
    # Arrange
    environ = {lifeline.ADDRESS_VARIABLE: address, lifeline.TOKEN_VARIABLE: TOKEN}

    # Act & assert
    with pytest.raises(ConfigError, match=lifeline.ADDRESS_VARIABLE) as raised:
        lifeline.attach(environ, stdin=-1)
    assert raised.value.variable == lifeline.ADDRESS_VARIABLE
    assert repr(address) in raised.value.problem


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_attach_without_token(owner, token):
    """Test a lifeline address without the token that pairs it.

    Given:
        A well-formed ``WOOL_DOCKER_LIFELINE`` and no or an empty token
    When:
        `attach` is called
    Then:
        It should raise `ConfigError` before connecting
    """
    # Arrange
    environ = _environ(owner)
    if token is None:
        del environ[lifeline.TOKEN_VARIABLE]
    else:
        environ[lifeline.TOKEN_VARIABLE] = token

    # Act & assert
    with pytest.raises(ConfigError, match="token"):
        lifeline.attach(environ, stdin=-1)
    owner.settimeout(0.2)
    with pytest.raises(TimeoutError):
        owner.accept()


def test_attach_with_owner(owner, pipe):
    """Test attaching to an owner that listens.

    Given:
        An owner listening on 127.0.0.1 and an environment naming it and a
        token
    When:
        `attach` is called with a pipe's read end as the descriptor to replace
    Then:
        It should return ``True``; the owner should read the token as the
        first line; the token should be gone from the environment (the
        address and other variables stay); and the descriptor should be the
        connection, with keepalive on
    """
    # Arrange
    environ = _environ(owner)
    stdin, _ = pipe

    # Act
    attached = lifeline.attach(environ, stdin=stdin)

    # Assert
    connection, _ = owner.accept()
    with connection:
        assert attached is True
        assert _read_line(connection) == f"{TOKEN}\n".encode()
        assert lifeline.TOKEN_VARIABLE not in environ
        assert environ[lifeline.ADDRESS_VARIABLE].startswith("127.0.0.1:")
        assert environ["WOOL_PORT"] == "50051"
        with socket.socket(fileno=os.dup(stdin)) as replaced:
            assert replaced.getpeername() == owner.getsockname()
            keepalive = replaced.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert keepalive != 0


def test_attach_then_owner_writes(owner, pipe):
    """Test that what the owner sends arrives on the replaced descriptor.

    Given:
        A task attached to its owner
    When:
        The owner sends the TLS line and a stop command, then closes
    Then:
        Both lines should be readable from the descriptor, then end of file
        (the owner is gone)
    """
    # Arrange
    stdin, _ = pipe
    lifeline.attach(_environ(owner), stdin=stdin)
    connection, _ = owner.accept()
    with connection:
        _read_line(connection)

        # Act
        connection.sendall(b'{"ca": "CA"}\nstop 5\n')
        received = b""
        while received.count(b"\n") < 2:
            received += os.read(stdin, 1024)

    # Assert
    assert received == b'{"ca": "CA"}\nstop 5\n'
    assert os.read(stdin, 1024) == b""


def test_announce_over_lifeline(owner, pipe):
    """Test the ready line reaching the owner over the lifeline.

    Given:
        A task attached to its owner
    When:
        `announce` writes a ready line to the replaced descriptor
    Then:
        The owner should read it, after the token, with its newline
    """
    # Arrange
    stdin, _ = pipe
    lifeline.attach(_environ(owner), stdin=stdin)
    connection, _ = owner.accept()
    with connection:
        _read_line(connection)
        line = 'wool-docker ready {"uid": "u", "port": 50051}'

        # Act
        lifeline.announce(line, stdin=stdin)

        # Assert
        assert _read_line(connection) == (line + "\n").encode()


def test_announce_to_pipe(pipe):
    """Test `announce` on a plain descriptor.

    Given:
        A pipe
    When:
        `announce` writes a line to its write end
    Then:
        The read end should yield exactly that line and a newline
    """
    # Arrange
    read, write = pipe

    # Act
    lifeline.announce("wool-docker ready {}", stdin=write)

    # Assert
    assert os.read(read, 1024) == b"wool-docker ready {}\n"


def test_attach_with_owner_listening_late(monkeypatch, pipe):
    """Test a task that starts before the owner's route is ready.

    Given:
        An owner whose port is bound but refuses connections at first, and
        starts listening 0.5 s later
    When:
        `attach` is called
    Then:
        It should retry, connect, and send the token
    """
    # Arrange
    monkeypatch.setattr(lifeline, "CONNECT_FOR", 10.0)
    monkeypatch.setattr(lifeline, "_RETRY", 0.05)
    late = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    late.bind(("127.0.0.1", 0))
    late.settimeout(5)
    timer = threading.Timer(0.5, late.listen, args=(1,))
    stdin, _ = pipe

    # Act
    timer.start()
    try:
        attached = lifeline.attach(_environ(late), stdin=stdin)
        connection, _ = late.accept()
    finally:
        timer.join()
        late.close()

    # Assert
    with connection:
        assert attached is True
        assert _read_line(connection) == f"{TOKEN}\n".encode()


def test_attach_with_unreachable_owner(monkeypatch, pipe):
    """Test an owner that cannot be reached in time.

    Given:
        An address whose port refuses connections, and ``CONNECT_FOR``
        patched to 0.3 s
    When:
        `attach` is called
    Then:
        It should raise `ConfigError` naming ``WOOL_DOCKER_LIFELINE`` and the
        address, and leave the descriptor as it was
    """
    # Arrange
    monkeypatch.setattr(lifeline, "CONNECT_FOR", 0.3)
    monkeypatch.setattr(lifeline, "_RETRY", 0.05)
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    read, write = pipe
    try:
        environ = _environ(closed)
        address = environ[lifeline.ADDRESS_VARIABLE]

        # Act
        with pytest.raises(ConfigError) as raised:
            lifeline.attach(environ, stdin=read)
    finally:
        closed.close()

    # Assert
    assert raised.value.variable == lifeline.ADDRESS_VARIABLE
    assert address in str(raised.value)
    os.write(write, b"still a pipe\n")
    assert os.read(read, 1024) == b"still a pipe\n"
