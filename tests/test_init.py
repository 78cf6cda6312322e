"""Tests for the `wool_docker` package namespace."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib import metadata

import pytest

import wool_docker

PUBLIC_NAMES = {
    "DockerDiscovery": "wool_docker.discovery",
    "DockerWorker": "wool_docker.worker",
    "Standby": "wool_docker.standby",
    "SwarmWorker": "wool_docker.swarm",
    "build_image": "wool_docker.image",
    "ContainerFailedError": "wool_docker.exceptions",
    "EngineError": "wool_docker.exceptions",
    "EnginePermissionError": "wool_docker.exceptions",
    "EngineUnavailableError": "wool_docker.exceptions",
    "ImageBuildError": "wool_docker.exceptions",
    "ImageMismatchError": "wool_docker.exceptions",
    "ImageNotFoundError": "wool_docker.exceptions",
    "ImagePullError": "wool_docker.exceptions",
    "MalformedLabelsWarning": "wool_docker.exceptions",
    "NetworkNotFoundError": "wool_docker.exceptions",
    "NotPublishedError": "wool_docker.exceptions",
    "RegistryAuthError": "wool_docker.exceptions",
    "RegistryUnreachableError": "wool_docker.exceptions",
    "WoolDockerError": "wool_docker.exceptions",
    "WoolDockerInternalError": "wool_docker.exceptions",
    "WoolDockerWarning": "wool_docker.exceptions",
    "WorkerFeedError": "wool_docker.exceptions",
    "WorkerStartTimeout": "wool_docker.exceptions",
}
"""Each public name the package exports lazily, and the module defining it."""


def _fresh_modules(code: str) -> list[str]:
    """Run ``code`` in a new interpreter; return the modules it imported.

    Only ``wool_docker``, ``wool`` and ``grpc`` modules are reported.
    """
    script = (
        f"{code}\n"
        "import json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if m.partition('.')[0] in ('wool_docker', 'wool', 'grpc'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test___all___with_star_import():
    """Test the package's star import.

    Given:
        The `wool_docker` package
    When:
        ``from wool_docker import *`` runs
    Then:
        It should bind every public name and ``__version__``, and nothing else
    """
    # Arrange
    namespace: dict = {}

    # Act
    exec("from wool_docker import *", namespace)

    # Assert
    namespace.pop("__builtins__")
    assert set(namespace) == set(PUBLIC_NAMES) | {"__version__"}


def test___version___with_installed_distribution():
    """Test the package version.

    Given:
        The installed ``wool-docker`` distribution
    When:
        ``wool_docker.__version__`` is read
    Then:
        It should equal the distribution's version
    """
    # Act
    version = wool_docker.__version__

    # Assert
    assert version == metadata.version("wool-docker")


def test___getattr___in_fresh_interpreter():
    """Test that importing the package loads none of its public modules.

    Given:
        A new interpreter
    When:
        ``import wool_docker`` runs
    Then:
        It should import only the package and its native module, not wool,
        grpc or the modules behind the public names
    """
    # Act
    modules = _fresh_modules("import wool_docker")

    # Assert
    assert modules == ["wool_docker", "wool_docker._native"]


def test___getattr___with_first_access_in_fresh_interpreter():
    """Test that a public name's module loads on first access.

    Given:
        A new interpreter that imported `wool_docker`
    When:
        ``wool_docker.DockerWorker`` is read
    Then:
        It should import ``wool_docker.worker``
    """
    # Act
    modules = _fresh_modules("import wool_docker\nwool_docker.DockerWorker")

    # Assert
    assert "wool_docker.worker" in modules


@pytest.mark.parametrize(("name", "module"), sorted(PUBLIC_NAMES.items()))
def test___getattr___with_public_name(name, module):
    """Test reading each public name from the package.

    Given:
        A public name of `wool_docker`
    When:
        It is read as an attribute of the package
    Then:
        It should be the object of that name in its defining module
    """
    # Act
    value = getattr(wool_docker, name)

    # Assert
    assert value is getattr(importlib.import_module(module), name)


def test___getattr___with_repeated_access():
    """Test reading a public name twice.

    Given:
        The `wool_docker` package
    When:
        ``DockerDiscovery`` is read twice
    Then:
        It should return the same object both times
    """
    # Act
    first, second = wool_docker.DockerDiscovery, wool_docker.DockerDiscovery

    # Assert
    assert first is second


def test___getattr___with_unknown_name():
    """Test reading a name the package does not have.

    Given:
        The `wool_docker` package
    When:
        An unknown attribute is read
    Then:
        It should raise `AttributeError` naming the package and the attribute
    """
    # Act & assert
    with pytest.raises(
        AttributeError, match="module 'wool_docker' has no attribute 'LocalWorker'"
    ):
        wool_docker.LocalWorker  # noqa: B018


def test___getattr___with_hasattr_on_unknown_name():
    """Test probing for a name the package does not have.

    Given:
        The `wool_docker` package
    When:
        ``hasattr`` is called with an unknown name
    Then:
        It should return ``False``
    """
    # Act
    found = hasattr(wool_docker, "LocalWorker")

    # Assert
    assert found is False


def test___dir___with_package():
    """Test listing the package's names.

    Given:
        The `wool_docker` package
    When:
        ``dir`` is called on it
    Then:
        It should list exactly ``__all__``, sorted
    """
    # Act
    names = dir(wool_docker)

    # Assert
    assert names == sorted(wool_docker.__all__)
