"""Tests for the pure half of worker images: the Dockerfile text and labels."""

from __future__ import annotations

import json
import sys

import pytest
import wool.protocol

from wool_docker._dockerfile import dockerfile
from wool_docker._dockerfile import worker_labels

PYTHON = "{}.{}".format(*sys.version_info[:2])


@pytest.fixture
def dockerfile_arguments() -> dict:
    """Keyword arguments of `dockerfile` for a typical image."""
    return {
        "base": "wool-docker-base:bookworm",
        "python": "3.11",
        "labels": {"wool.version": "0.15.7", "wool.port": "50051"},
        "install": ["/wheels/wool-0.15.7-py3-none-any.whl"],
        "port": 50051,
    }


def test_worker_labels_with_versions():
    """Test the labels of a worker image from given versions.

    Given:
        A Python version, a wool version, a wool-docker version and a port
    When:
        `worker_labels` is called
    Then:
        It should hold exactly those values and wool's protocol version,
        reading nothing from the installed environment
    """
    # Act
    labels = worker_labels(
        python="3.11", wool_version="9.8.7", wool_docker_version="0.1.0", port=6000
    )

    # Assert
    assert labels == {
        "wool.version": wool.protocol.__version__,
        "wool.docker.python": "3.11",
        "wool.docker.wool": "9.8.7",
        "wool.docker.version": "0.1.0",
        "wool.port": "6000",
    }


def test_dockerfile_with_typical_arguments(dockerfile_arguments):
    """Test the stages of a worker image's Dockerfile.

    Given:
        A base image, a Python version, labels, a wheel and a port
    When:
        `dockerfile` is called
    Then:
        It should build a venv from the copied wheels with no index in a
        ``build`` stage, copy only the venv into the final stage, and run as
        the unprivileged user 65532 with its home in ``/home/wool``
    """
    # Act
    text = dockerfile(**dockerfile_arguments)

    # Assert
    lines = text.splitlines()
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == [
        "FROM wool-docker-base:bookworm AS build",
        "FROM wool-docker-base:bookworm",
    ]
    build, final = text.split("\nFROM wool-docker-base:bookworm\n")
    assert "COPY wheels /wheels" in build
    assert "python3 -m venv /opt/wool" in build
    assert "/opt/wool/bin/pip install --no-index --find-links /wheels" in build
    assert "/wheels/wool-0.15.7-py3-none-any.whl" in build
    assert final.startswith("COPY --from=build /opt/wool /opt/wool\n")
    assert "ENV PATH=/opt/wool/bin:${PATH:-" in final
    assert "PYTHONUNBUFFERED=1" in final
    assert "WOOL_PORT=50051" in final
    assert "EXPOSE 50051" in final
    assert "HOME=/home/wool" in final
    assert "\nUSER 65532:65532\n" in final
    assert final.index("USER ") > final.index("chown 65532:65532 /home/wool")
    assert "syntax=" not in text


def test_dockerfile_with_python_check(dockerfile_arguments):
    """Test the Python version check of the build stage.

    Given:
        A Dockerfile for another Python minor version than this one
    When:
        The build stage's check runs under this interpreter
    Then:
        It should exit with a message naming both versions and the fix
    """
    # Arrange
    other = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    text = dockerfile(**dockerfile_arguments | {"python": other})
    run = next(line for line in text.splitlines() if line.startswith('RUN ["python3"'))
    program, flag, code = json.loads(run.removeprefix("RUN "))

    # Act
    with pytest.raises(SystemExit) as raised:
        exec(code, {})

    # Assert
    assert (program, flag) == ("python3", "-c")
    message = str(raised.value.code)
    assert f"has Python {PYTHON}" in message
    assert f"built for Python {other}" in message
    assert "wool-docker-base:bookworm" in message
    assert "--base" in message


def test_dockerfile_with_matching_python(dockerfile_arguments):
    """Test the Python version check on a matching base.

    Given:
        A Dockerfile for this interpreter's Python minor version
    When:
        The build stage's check runs under this interpreter
    Then:
        It should exit with status 0
    """
    # Arrange
    text = dockerfile(**dockerfile_arguments | {"python": PYTHON})
    run = next(line for line in text.splitlines() if line.startswith('RUN ["python3"'))
    code = json.loads(run.removeprefix("RUN "))[2]

    # Act
    with pytest.raises(SystemExit) as raised:
        exec(code, {})

    # Assert
    assert raised.value.code == 0


def test_dockerfile_with_special_label_values(dockerfile_arguments):
    """Test label quoting.

    Given:
        Labels whose values hold quotes, backslashes, ``$`` and spaces
    When:
        `dockerfile` is called
    Then:
        It should quote every key and value and escape the characters the
        Dockerfile lexer would interpret
    """
    # Arrange
    labels = {"wool.version": "0.15.7", "note": 'say "hi" \\ to $HOME now'}

    # Act
    text = dockerfile(**dockerfile_arguments | {"labels": labels})

    # Assert
    assert '"wool.version"="0.15.7"' in text
    assert '"note"="say \\"hi\\" \\\\ to \\$HOME now"' in text


def test_dockerfile_with_label_line_break(dockerfile_arguments):
    """Test a label value with a line break.

    Given:
        A label value holding a newline
    When:
        `dockerfile` is called
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError, match="line break"):
        dockerfile(**dockerfile_arguments | {"labels": {"a": "one\ntwo"}})


def test_dockerfile_with_quoted_install_items(dockerfile_arguments):
    """Test install arguments that need shell quoting.

    Given:
        An install argument with a space in it
    When:
        `dockerfile` is called
    Then:
        It should shell-quote it in the ``pip install`` command
    """
    # Act
    text = dockerfile(**dockerfile_arguments | {"install": ["/wheels/a b.whl"]})

    # Assert
    assert "'/wheels/a b.whl'" in text


def test_dockerfile_with_no_setuid_or_setgid_file(dockerfile_arguments):
    """Test that the final stage leaves no file that grants privileges.

    Given:
        Typical arguments
    When:
        `dockerfile` is called
    Then:
        The final stage should clear the setuid and setgid bits of every
        file on the image's file system, then fail the build if any is left,
        before it switches to the unprivileged user
    """
    # Act
    text = dockerfile(**dockerfile_arguments)

    # Assert
    final = text.split("\nFROM wool-docker-base:bookworm\n")[1]
    strip = "find / -xdev -type f -perm /6000 -exec chmod ug-s {} +"
    check = 'test -z "$(find / -xdev -type f -perm /6000)"'
    assert strip in final
    assert check in final
    assert final.index(strip) < final.index(check) < final.index("\nUSER ")


def test_dockerfile_with_healthcheck_and_entrypoint(dockerfile_arguments):
    """Test how the final stage runs the worker.

    Given:
        Typical arguments
    When:
        `dockerfile` is called
    Then:
        It should end with the health check, stop signal and entry point of
        ``wool_docker._entrypoint``
    """
    # Act
    text = dockerfile(**dockerfile_arguments)

    # Assert
    final = text.split("\nFROM wool-docker-base:bookworm\n")[1]
    assert (
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\\n"
        '    CMD ["python3", "-m", "wool_docker._entrypoint", "--health"]\n'
        "STOPSIGNAL SIGTERM\n"
        'ENTRYPOINT ["python3", "-m", "wool_docker._entrypoint"]\n'
    ) in final


@pytest.mark.parametrize(
    "override",
    [
        {"base": ""},
        {"base": "python 3.11"},
        {"python": "3"},
        {"python": "three.eleven"},
        {"port": 0},
        {"port": 65536},
        {"install": []},
    ],
)
def test_dockerfile_with_invalid_argument(dockerfile_arguments, override):
    """Test arguments that cannot make a Dockerfile.

    Given:
        An empty or spaced base, a malformed Python version, a port out of
        range or nothing to install
    When:
        `dockerfile` is called
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError):
        dockerfile(**dockerfile_arguments | override)
