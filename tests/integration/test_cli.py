"""Real-daemon tests of the ``wool-docker`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("WOOL_DOCKER_IMAGE", "wool-docker-worker:dev")
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


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def label() -> str:
    """A label unique to this test; containers carrying it are removed after."""
    value = f"wool.docker.test={_RUN}-{uuid.uuid4().hex[:6]}"
    yield value
    ids = _docker("ps", "-aq", "--filter", f"label={value}").split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


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
            It should exit 1 saying the Engine cannot be reached, without a
            traceback.
        """
        # Act
        result = _cli("ps", env={"DOCKER_HOST": f"unix:///tmp/wdt-{_RUN}.sock"})

        # Assert
        assert result.returncode == 1
        assert "cannot reach the Docker Engine" in result.stderr
        assert "Traceback" not in result.stderr

    def test_ps_with_running_worker(self, label):
        """Test listing a hand-run worker container.

        Given:
            A worker container started with ``docker run`` and a test label.
        When:
            ``wool-docker ps --label`` selects it.
        Then:
            It should print its uid (derived from the container id) and name.
        """
        # Arrange
        container = _docker("run", "-d", "--label", label, IMAGE)
        name = _docker("inspect", "-f", "{{.Name}}", container).lstrip("/")

        # Act
        result = _cli("ps", "--label", label)

        # Assert
        assert result.returncode == 0, result.stderr
        assert str(uuid.UUID(hex=container[:32])) in result.stdout
        assert name in result.stdout

    def test_prune_with_orphaned_container(self, label):
        """Test pruning a worker container whose owner process is gone.

        Given:
            A managed container whose owner token names a dead process, and one
            owned by this (live) test process.
        When:
            ``wool-docker prune`` runs, scoped to the test's label.
        Then:
            It should remove the orphan only; ``--all`` should remove the other.
        """
        # Arrange
        host = open("/proc/sys/kernel/hostname").read().strip()
        stat = open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()
        alive = f"{host}/{os.getpid()}/{stat[19]}"
        dead = f"{host}/{os.getpid()}/1"
        args = ["run", "-d", "--label", label, "--label", "wool.docker.managed=true"]
        orphan = _docker(*args, "--label", f"wool.docker.owner={dead}", IMAGE)
        owned = _docker(*args, "--label", f"wool.docker.owner={alive}", IMAGE)

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
