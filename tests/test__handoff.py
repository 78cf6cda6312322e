"""Tests for `wool_docker._handoff`: TLS material over a worker's stdin."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from wool_docker import _handoff

MATERIAL = {"ca": "CA PEM", "cert": "CERT PEM", "key": "KEY PEM"}
"""What the owner sends."""


def _environ(directory: Path) -> dict[str, str]:
    return {
        "WOOL_TLS_CA": str(directory / "ca.pem"),
        "WOOL_TLS_CERT": str(directory / "cert.pem"),
        "WOOL_TLS_KEY": str(directory / "key.pem"),
    }


def test_receive_tls_with_stop_command_behind(pipe, tmp_path):
    """Test the owner's TLS line followed by a stop command.

    Given:
        The TLS line and then ``stop 0`` on stdin
    When:
        The line is received
    Then:
        Each file should hold its text with mode 0400, and the stop command
        should still be unread on stdin for the control thread
    """
    # Arrange
    read, write = pipe
    os.write(write, json.dumps(MATERIAL).encode() + b"\nstop 0\n")
    os.close(write)

    # Act
    _handoff.receive_tls(read, _environ(tmp_path))

    # Assert
    for name, text in MATERIAL.items():
        path = tmp_path / f"{name}.pem"
        assert path.read_text() == text
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert os.read(read, 100) == b"stop 0\n"


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (b"", "closed before"),
        (b'{"ca": "x"', "closed before"),
        (b"not json\n", "not JSON"),
        (b'{"ca": "a", "cert": "b"}\n', "exactly"),
        (b'{"ca": "a", "cert": "b", "key": "c", "more": "d"}\n', "exactly"),
        (b'{"ca": 1, "cert": "b", "key": "c"}\n', "no text"),
    ],
)
def test_receive_tls_with_bad_line(pipe, tmp_path, sent, problem):
    """Test what the entry point refuses to take as TLS material.

    Given:
        stdin ending early, or a line that is not the three PEM texts
    When:
        The line is received
    Then:
        It should raise `HandoffError` saying what is wrong
    """
    # Arrange
    read, write = pipe
    os.write(write, sent)
    os.close(write)

    # Act & assert
    with pytest.raises(_handoff.HandoffError, match=problem):
        _handoff.receive_tls(read, _environ(tmp_path))


def test_receive_tls_with_endless_line(pipe, tmp_path, mocker):
    """Test a line that never ends.

    Given:
        More than `MAX_LINE` bytes without a newline
    When:
        The line is received
    Then:
        It should raise `HandoffError` once past the bound, not keep reading
    """
    # Arrange
    read, write = pipe
    mocker.patch.object(_handoff, "MAX_LINE", 64)
    os.write(write, b"x" * 100)

    # Act & assert
    with pytest.raises(_handoff.HandoffError, match="longer than 64"):
        _handoff.receive_tls(read, _environ(tmp_path))
    assert os.read(read, 100) == b"x" * 35


def test_receive_tls_with_file_in_place(pipe, tmp_path):
    """Test a target path that exists already (a planted file or link).

    Given:
        A symlink where the key is to be written
    When:
        The line is received
    Then:
        It should raise `HandoffError` and write nothing through the link
    """
    # Arrange
    read, write = pipe
    target = tmp_path / "elsewhere"
    (tmp_path / "key.pem").symlink_to(target)
    os.write(write, json.dumps(MATERIAL).encode() + b"\n")

    # Act & assert
    with pytest.raises(_handoff.HandoffError, match="cannot write"):
        _handoff.receive_tls(read, _environ(tmp_path))
    assert not target.exists()
