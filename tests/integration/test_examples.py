"""The examples and README commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wool_docker.pytest import DockerCli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_with_fresh_network(network: str, image: str, docker: DockerCli):
    """Test the README's demo program (``scripts/demo.sh`` runs it).

    Given:
        A fresh bridge network and the worker image.
    When:
        ``examples/demo.py`` runs.
    Then:
        It should count the 17984 primes below 200000 in containers, print
        which container computed each range, and leave no container behind.
    """
    # Act
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "WOOL_DOCKER_NETWORK": network,
            "WOOL_DOCKER_IMAGE": image,
        },
    )
    left = docker.run("ps", "-aq", "--filter", f"network={network}").stdout.split()
    docker.remove_containers(*left)

    # Assert
    assert result.returncode == 0, result.stderr[-2000:]
    assert "17984 primes below 200000" in result.stdout
    assert "containers removed" in result.stdout
    assert left == []
