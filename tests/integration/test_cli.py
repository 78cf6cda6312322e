"""Real-daemon tests of the ``wool-docker`` command line."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from wool_docker import _native
from wool_docker.pytest import DockerCli

pytestmark = pytest.mark.integration

_RUN = uuid.uuid4().hex[:8]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``wool-docker`` as a user would, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "wool_docker.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


_docker_cli = DockerCli()


def _docker(*args: str) -> str:
    return _docker_cli.run(*args).stdout.strip()


@pytest.fixture
def label(selector: dict[str, str]) -> Iterator[str]:
    """This test's label (``key=value``); containers carrying it are removed
    after, before the leak guard looks."""
    ((key, value),) = selector.items()
    yield f"{key}={value}"
    _docker_cli.remove_containers(*_docker_cli.containers(f"{key}={value}"))


@pytest.fixture
def other_user():
    """A second local user with a live process: (uid, pid); both removed after."""
    user = f"wdt{_RUN}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
        capture_output=True,
    )
    process = None
    try:
        uid = pwd.getpwnam(user).pw_uid
        # Reads stdin until the test closes it: alive exactly as long as needed.
        process = subprocess.Popen(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "cat"],
            stdin=subprocess.PIPE,
        )
        yield uid, process.pid
    finally:
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
        subprocess.run(["userdel", user], check=True, capture_output=True)


def _managed(image: str, label: str, owner: str) -> str:
    """Start a container labelled as `DockerWorker` labels its own, with ``owner``."""
    return _docker(
        "run", "-d", "--label", label, "--label", "wool.docker.managed=true",
        "--label", f"wool.docker.owner={owner}", image,
    )  # fmt: skip


class TestCli:
    """Tests for the ``wool-docker`` command against the real daemon."""

    def test_image_build_with_missing_base(self):
        """Test building an image from a base that is not on the daemon.

        Given:
            A base image name that does not exist.
        When:
            ``wool-docker image build --base`` runs.
        Then:
            It should exit 1 with one error line naming the image, and no
            traceback.
        """
        # Act
        result = _cli("image", "build", "--tag", f"wdt-{_RUN}:x", "--base", "no-such:1")

        # Assert
        assert result.returncode == 1
        assert "no-such:1" in result.stderr
        assert "Traceback" not in result.stderr

    def test_ps_with_unreachable_engine(self):
        """Test a command against an Engine address nothing listens on.

        Given:
            ``DOCKER_HOST`` pointing at a missing socket.
        When:
            ``wool-docker ps`` runs.
        Then:
            It should exit 1 saying that the socket does not exist, without a
            traceback.
        """
        # Act
        result = _cli("ps", env={"DOCKER_HOST": f"unix:///tmp/wdt-{_RUN}.sock"})

        # Assert
        assert result.returncode == 1
        assert f"socket /tmp/wdt-{_RUN}.sock does not exist" in result.stderr
        assert "Traceback" not in result.stderr

    def test_ps_with_running_worker(self, label, image):
        """Test listing a hand-run worker container.

        Given:
            A worker container started with ``docker run`` and a test label.
        When:
            ``wool-docker ps --label`` selects it.
        Then:
            It should print its uid (derived from the container id) and name.
        """
        # Arrange
        container = _docker("run", "-d", "--label", label, image)
        name = _docker("inspect", "-f", "{{.Name}}", container).lstrip("/")

        # Act
        result = _cli("ps", "--label", label)

        # Assert
        assert result.returncode == 0, result.stderr
        assert str(uuid.UUID(hex=container[:32])) in result.stdout
        assert name in result.stdout

    def test_prune_with_orphaned_container(self, label, image):
        """Test pruning a worker container whose owner process is gone.

        Given:
            A managed container whose owner token names a dead process of this
            user, and one owned by this (live) test process.
        When:
            ``wool-docker prune`` runs, scoped to the test's label.
        Then:
            It should remove the orphan only; ``--all`` should remove the other.
        """
        # Arrange
        alive = _native.owner_token()
        uid, host, pid, _ = alive.split("/")
        dead = f"{uid}/{host}/{pid}/1"
        orphan = _managed(image, label, dead)
        owned = _managed(image, label, alive)

        # Act
        pruned = _cli("prune", "--label", label)
        left = _docker("ps", "-aq", "--no-trunc", "--filter", f"label={label}").split()
        pruned_all = _cli("prune", "--all", "--label", label)
        left_after_all = _docker("ps", "-aq", "--filter", f"label={label}").split()

        # Assert
        assert pruned.returncode == 0, pruned.stderr
        assert left == [owned]
        assert orphan not in left
        assert pruned_all.returncode == 0, pruned_all.stderr
        assert left_after_all == []

    def test_prune_with_another_users_containers(self, label, other_user, image):
        """Test pruning next to the worker containers of another local user.

        Given:
            A second local user with a live process, and managed containers
            whose owner tokens name: that live process, a dead process of that
            user, a dead process of this user, and a dead owner in the token
            format of wool-docker before the uid (``host/pid/start``).
        When:
            ``wool-docker prune``, then ``prune --all``, then
            ``prune --any-user``, then ``prune --all --any-user`` run, scoped
            to the test's label.
        Then:
            ``prune`` and ``prune --all`` should remove only this user's
            container; ``--any-user`` the other user's dead owner's and the
            old-format one; ``--all --any-user`` the live one too.
        """
        # Arrange
        other_uid, other_pid = other_user
        uid, host, pid, _ = _native.owner_token().split("/")
        start = open(f"/proc/{other_pid}/stat").read().rsplit(")", 1)[1].split()[19]
        theirs_live = _managed(image, label, f"{other_uid}/{host}/{other_pid}/{start}")
        theirs_dead = _managed(image, label, f"{other_uid}/{host}/{pid}/1")
        hostname = open("/proc/sys/kernel/hostname").read().strip()
        legacy_dead = _managed(image, label, f"{hostname}/{pid}/1")
        mine_dead = _managed(image, label, f"{uid}/{host}/{pid}/1")

        def left() -> set[str]:
            return set(
                _docker("ps", "-aq", "--no-trunc", "--filter", f"label={label}").split()
            )

        # Act
        results = []
        states = []
        for flags in ([], ["--all"], ["--any-user"], ["--all", "--any-user"]):
            results.append(_cli("prune", *flags, "--label", label))
            states.append(left())

        # Assert
        for result in results:
            assert result.returncode == 0, result.stderr
        assert states[0] == {theirs_live, theirs_dead, legacy_dead}
        assert "--any-user" in results[0].stderr
        assert states[1] == states[0]
        assert states[2] == {theirs_live}
        assert states[3] == set()
        assert mine_dead not in states[0]
