"""Tests for `wool_docker._entrypoint.standby`: a parked container's wait for
its claim, over a pipe standing in for its stdin."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wool_docker._entrypoint import standby
from wool_docker._entrypoint.config import ConfigError

MATERIAL = {"ca": "CA PEM", "cert": "CERT PEM", "key": "KEY PEM"}
"""The TLS material a claim carries."""

DOCUMENT = '{"uid": "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11", "tags": ["a", "b"]}'
"""An owner's document: a worker's uid and tags."""


@pytest.fixture
def environ(monkeypatch, tmp_path) -> Iterator[Path]:
    """A clean process environment naming TLS paths under ``tmp_path``; the
    claim variables `park` sets are removed afterwards."""
    for variable in standby.CLAIM_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    yield tmp_path
    for variable in standby.CLAIM_VARIABLES:
        os.environ.pop(variable, None)


def _tls_env(directory: Path) -> dict[str, str]:
    return {
        "WOOL_TLS_CA": str(directory / "ca.pem"),
        "WOOL_TLS_CERT": str(directory / "cert.pem"),
        "WOOL_TLS_KEY": str(directory / "key.pem"),
    }


def _claim(env: dict[str, str], tls: dict[str, str] | None = None) -> bytes:
    return json.dumps({"env": env, "tls": tls}).encode()


def test_read_claim_without_tls(tmp_path):
    """Test a plaintext worker's claim.

    Given:
        A claim with the owner's document (uid and tags) and no TLS material
    When:
        It is read
    Then:
        It should return those variables and write no file
    """
    # Arrange
    env = {"WOOL_DOCKER_WORKER": DOCUMENT}

    # Act
    result = standby.read_claim(_claim(env), {})

    # Assert
    assert result == env
    assert list(tmp_path.iterdir()) == []


def test_read_claim_with_tls(tmp_path):
    """Test a TLS worker's claim whose paths come from the claim itself.

    Given:
        A claim whose env names the TLS paths and whose tls holds the
        material
    When:
        It is read with an environment that names no path
    Then:
        Each file should hold its text with mode 0400
    """
    # Arrange
    env = {"WOOL_DOCKER_WORKER": DOCUMENT, **_tls_env(tmp_path)}

    # Act
    result = standby.read_claim(_claim(env, MATERIAL), {})

    # Assert
    assert result == env
    for name, text in MATERIAL.items():
        path = tmp_path / f"{name}.pem"
        assert path.read_text() == text
        assert stat.S_IMODE(path.stat().st_mode) == 0o400


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param(b"not json", "not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "exactly", id="not-object"),
        pytest.param(b'{"env": {}}', "exactly", id="no-tls"),
        pytest.param(b'{"env": {}, "tls": null, "x": 1}', "exactly", id="more"),
        pytest.param(b'{"env": [], "tls": null}', "text", id="env-list"),
        pytest.param(
            b'{"env": {"WOOL_DOCKER_WORKER": 1}, "tls": null}', "text", id="env-int"
        ),
        pytest.param(
            b'{"env": {"WOOL_UID": "u"}, "tls": null}',
            "WOOL_UID",
            id="a-variable-the-document-holds",
        ),
        pytest.param(
            b'{"env": {"LD_PRELOAD": "/x.so"}, "tls": null}', "LD_PRELOAD", id="ld"
        ),
        pytest.param(
            b'{"env": {"WOOL_DOCKER_FEED": "/x"}, "tls": null}',
            "WOOL_DOCKER_FEED",
            id="feed",
        ),
        pytest.param(b'{"env": {}, "tls": {"ca": "x"}}', "exactly", id="tls-partial"),
    ],
)
def test_read_claim_with_bad_line(tmp_path, line, problem):
    """Test what a parked container refuses to take as its claim.

    Given:
        A line that is not JSON, not a claim object, has a malformed env,
        sets a variable that is not the worker's own (e.g. ``LD_PRELOAD``),
        or carries partial TLS material
    When:
        It is read
    Then:
        It should raise `ConfigError` saying what is wrong
    """
    # Act & assert
    with pytest.raises(ConfigError, match=problem) as caught:
        standby.read_claim(line, _tls_env(tmp_path))
    assert caught.value.variable == "WOOL_DOCKER_STANDBY"


def test_read_claim_with_existing_tls_file(tmp_path):
    """Test a claim whose TLS file already exists (a planted file or link).

    Given:
        A file already at the key's path
    When:
        A TLS claim is read
    Then:
        It should raise `ConfigError` and leave that file as it was
    """
    # Arrange
    (tmp_path / "key.pem").write_text("planted")
    env = _tls_env(tmp_path)

    # Act & assert
    with pytest.raises(ConfigError):
        standby.read_claim(_claim(env, MATERIAL), {})
    assert (tmp_path / "key.pem").read_text() == "planted"


def test_park_with_claim(pipe, environ, capsys):
    """Test a parked container receiving its claim, a stop command behind it.

    Given:
        A blank line, the claim, and then ``stop 0`` on stdin
    When:
        The container parks
    Then:
        It should print the parked line with its pid, return the claim's
        variables and set them in its environment, and leave the stop
        command unread for the control thread
    """
    # Arrange
    read, write = pipe
    env = {"WOOL_DOCKER_WORKER": DOCUMENT, **_tls_env(environ)}
    os.write(write, b"\n" + _claim(env, MATERIAL) + b"\nstop 0\n")

    # Act
    result = standby.park(read)

    # Assert
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(standby.PARKED_PREFIX)
    assert json.loads(line[len(standby.PARKED_PREFIX) :]) == {"pid": os.getpid()}
    assert result == env
    assert {k: os.environ[k] for k in env} == env
    assert (environ / "key.pem").read_text() == "KEY PEM"
    assert os.read(read, 100) == b"stop 0\n"


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="end-of-file"),
        pytest.param(b"\n\n", id="blank-lines-then-end"),
        pytest.param(b"stop 5\n", id="stop"),
        pytest.param(b"stop -1\n", id="stop-unbounded"),
    ],
)
def test_park_without_claim(pipe, environ, sent):
    """Test a parked container whose owner ends the wait.

    Given:
        End of file (the owner died or closed its stdin), possibly after
        blank lines, or a stop command, before any claim
    When:
        The container parks
    Then:
        It should raise `Unclaimed` and set no worker variable
    """
    # Arrange
    read, write = pipe
    os.write(write, sent)
    os.close(write)

    # Act & assert
    with pytest.raises(standby.Unclaimed):
        standby.park(read)
    assert not (standby.CLAIM_VARIABLES & set(os.environ))


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        pytest.param(b"launch\n", "unknown command", id="unknown-command"),
        pytest.param(b"stop nan\n", "bad grace", id="nan-grace"),
        pytest.param(b'{"env": {"PATH": "/x"}, "tls": null}\n', "PATH", id="bad-claim"),
    ],
)
def test_park_with_bad_input(pipe, environ, sent, problem):
    """Test a parked container given a line it cannot act on.

    Given:
        An unknown command, a stop with a NaN grace, or a claim setting a
        variable that is not the worker's
    When:
        The container parks
    Then:
        It should raise `ConfigError` and set no worker variable
    """
    # Arrange
    read, write = pipe
    os.write(write, sent)

    # Act & assert
    with pytest.raises(ConfigError, match=problem):
        standby.park(read)
    assert not (standby.CLAIM_VARIABLES & set(os.environ))
