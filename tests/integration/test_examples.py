"""The examples and README commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("WOOL_DOCKER_IMAGE", "wool-docker-worker:dev")


def test_demo_with_fresh_network():
    """Test the README's demo program (``scripts/demo.sh`` runs it).

    Given:
        A fresh bridge network and the worker image.
    When:
        ``examples/demo.py`` runs.
    Then:
        It should count the 17984 primes below 200000 in containers, print
        which container computed each range, and leave no container behind.
    """
    # Arrange
    network = f"wdt-demo-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "network", "create", network], check=True, capture_output=True
    )
    try:
        # Act
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo.py")],
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "WOOL_DOCKER_NETWORK": network,
                "WOOL_DOCKER_IMAGE": IMAGE,
            },
        )
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"network={network}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    finally:
        subprocess.run(["docker", "network", "rm", network], capture_output=True)

    # Assert
    assert result.returncode == 0, result.stderr[-2000:]
    assert "17984 primes below 200000" in result.stdout
    assert "containers removed" in result.stdout
    assert left == []
