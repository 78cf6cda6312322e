"""Fixtures shared by the unit tests, and the project's pytest plugin.

`wool_docker.pytest` is loaded here, the top ``conftest.py``, as its users load
it: the integration tests use its fixtures (see ``integration/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["wool_docker.pytest"]


def pytest_configure(config: pytest.Config) -> None:
    """The worker image under test is ``WOOL_DOCKER_IMAGE``, else the one
    ``scripts/build.sh`` tags by default, unless ``--wool-docker-image`` names
    another: the tests never build one of their own."""
    if not config.option.wool_docker_image:
        config.option.wool_docker_image = os.environ.get(
            "WOOL_DOCKER_IMAGE", "wool-docker-worker:dev"
        )


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe standing in for the container's stdin: (read end, write end)."""
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass
