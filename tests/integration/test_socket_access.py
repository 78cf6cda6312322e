"""Real-daemon tests of a user who may not open the Engine's socket.

The owner runs as an unprivileged user (``nobody``, no supplementary groups)
against this machine's own socket: the error must name the socket, the group
that owns it and the fix, and nothing may be created.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from wool_docker.pytest import DockerCli

pytestmark = pytest.mark.integration

NOBODY = 65534
"""The unprivileged uid and gid the owner runs as."""

_START = """
import asyncio
import json
import sys

from wool_docker import DockerWorker
from wool_docker import EnginePermissionError


async def main():
    worker = DockerWorker(image=sys.argv[1], labels=json.loads(sys.argv[2]))
    try:
        await worker.start()
    except EnginePermissionError as error:
        print(json.dumps({
            "message": str(error),
            "socket": error.socket,
            "group": error.group,
            "permission_error": isinstance(error, PermissionError),
        }))
    else:
        await worker.stop()
        print("started")


asyncio.run(main())
"""
"""A worker start that reports the permission error it meets."""


def _as_nobody(
    python: str, path: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python *args`` as ``nobody`` with only ``path`` to import from."""
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         python, *args],
        capture_output=True,
        text=True,
        cwd="/",
        env={
            **os.environ,
            "HOME": "/nonexistent",
            "PYTHONPATH": path,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            **(env or {}),
        },
        timeout=120,
    )  # fmt: skip


def _interpreters() -> list[str]:
    """This interpreter, then the system's of the same minor version: a
    venv's interpreter may live where ``nobody`` cannot go (pyenv's under
    ``/root``)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [os.path.realpath(sys.executable), f"/usr/bin/{minor}"]
    return [p for p in dict.fromkeys(found) if os.path.exists(p)]


def _closure(name: str) -> set[str]:
    """``name`` and every distribution it requires, installed ones only."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        dist_name = todo.pop()
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _copy_readable(root: Path) -> str:
    """Copy wool-docker and what it needs into ``root``, readable by anyone."""
    for name in _closure("wool-docker"):
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                target = root / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    for path in root.rglob("*"):
        path.chmod(
            path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        )
    root.chmod(0o755)
    return str(root)


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[tuple[str, str]]:
    """An interpreter and an import path with which ``nobody`` imports
    wool_docker: the venv's own where ``nobody`` can read it, else a copy."""
    pythons = [
        p for p in _interpreters() if _as_nobody(p, "", "-c", "pass").returncode == 0
    ]
    if not pythons:
        pytest.skip(
            f"no Python {sys.version_info.major}.{sys.version_info.minor} that "
            f"uid {NOBODY} may run (tried {_interpreters()})"
        )
    python = pythons[0]
    path = os.pathsep.join(site.getsitepackages())
    probe = "import wool_docker.worker"
    if _as_nobody(python, path, "-c", probe).returncode == 0:
        yield python, path
        return
    copy = Path(tempfile.mkdtemp(prefix="wool-docker-nobody-"))
    try:
        path = _copy_readable(copy)
        checked = _as_nobody(python, path, "-c", probe)
        assert checked.returncode == 0, checked.stderr
        yield python, path
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="module")
def socket_group(wool_docker_engine: str) -> tuple[str, str]:
    """This machine's Engine socket and the name of the group that owns it."""
    host = wool_docker_engine
    if not host.startswith("unix://"):
        pytest.skip(f"the Engine is not a local socket: {host}")
    socket = host.removeprefix("unix://")
    info = os.stat(socket)
    if info.st_mode & 0o006 == 0o006:
        pytest.skip(f"{socket} is open to every user")
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return socket, group


class TestSocketAccess:
    """A user outside the socket's group is told which group to join."""

    def test_start_without_access_to_the_socket(
        self, unprivileged, socket_group, image, selector, wool_docker_cli: DockerCli
    ):
        """Test a worker start by a user who may not open the Engine socket.

        Given:
            An owner process running as ``nobody``, in no group, against this
            machine's Engine socket.
        When:
            ``DockerWorker(...).start()`` runs.
        Then:
            It should raise `EnginePermissionError`, also a `PermissionError`,
            whose message names the socket, its group and ``sudo usermod -aG
            GROUP $USER``, and no container should exist.
        """
        # Arrange
        python, path = unprivileged
        socket, group = socket_group

        # Act
        result = _as_nobody(python, path, "-c", _START, image, json.dumps(selector))

        # Assert
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["socket"] == socket
        assert report["group"] == group
        assert report["permission_error"] is True
        message = report["message"]
        assert f"permission denied on the Docker Engine socket {socket}" in message
        assert f"group '{group}'" in message
        assert f"`sudo usermod -aG {group} $USER` and log in again" in message
        assert "rootless Docker" in message
        ((key, value),) = selector.items()
        assert wool_docker_cli.containers(f"{key}={value}") == []

    def test_ps_without_access_to_the_socket(self, unprivileged, socket_group):
        """Test ``wool-docker ps`` by a user who may not open the Engine socket.

        Given:
            ``nobody``, in no group.
        When:
            ``wool-docker ps`` runs.
        Then:
            It should exit 1 with one error naming the socket, its group and
            the fix, and no traceback; not "start the daemon".
        """
        # Arrange
        python, path = unprivileged
        socket, group = socket_group

        # Act
        result = _as_nobody(python, path, "-m", "wool_docker.cli", "ps")

        # Assert
        assert result.returncode == 1
        assert f"permission denied on the Docker Engine socket {socket}" in result.stderr
        assert f"sudo usermod -aG {group} $USER" in result.stderr
        assert "start the daemon" not in result.stderr
        assert "Traceback" not in result.stderr
