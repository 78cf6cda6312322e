"""Tests for the seed's import paths: our import hook and the upstream modules.

``scripts/check-extra.py`` proves the whole path with real installs; these check
the pieces in this interpreter and in fresh ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import wool.runtime.worker

import wool_docker

UPSTREAM = Path(__file__).resolve().parent.parent / "upstream" / "wool" / "src"
HINT = "pip install 'wool[docker]'"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment, outside the
    checkout so nothing in it shadows an installed module."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(sys.executable).parent,
        timeout=120,
        check=False,
    )


def test_seed_paths_are_served_by_the_hook_without_a_file_in_wool():
    """With today's wool the seed's paths give our classes, and wool's
    package directory holds no file of ours (it lists only wool's own)."""
    result = _python(
        "import wool.runtime.worker.docker as w, wool.runtime.discovery.docker as d\n"
        "import wool_docker\n"
        "assert w.DockerWorker is wool_docker.DockerWorker\n"
        "assert d.DockerDiscovery is wool_docker.DockerDiscovery\n"
        "from wool.runtime.worker.docker import DockerWorker\n"
        "print(w.__spec__.origin, d.__spec__.origin)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wool-docker", "wool-docker"]
    ours = [str(f) for f in metadata.distribution("wool-docker").files or []]
    assert not [f for f in ours if f.startswith("wool/")]


def test_hook_is_loaded_at_start_up_by_one_line():
    """The ``.pth`` the wheel installs imports the hook and nothing else."""
    files = metadata.distribution("wool-docker").files or []
    (pth,) = [f for f in files if str(f).endswith(".pth")]
    assert Path(str(pth.locate())).read_text().splitlines() == [
        "import _wool_docker_seed"
    ]
    result = _python("import sys; print('_wool_docker_seed' in sys.modules)")
    assert result.stdout.strip() == "True"


def test_wool_s_own_module_wins_over_the_hook(tmp_path, monkeypatch):
    """When wool has its own ``docker`` module the hook is never asked."""
    (tmp_path / "docker.py").write_text("OWN = True\n")
    monkeypatch.setattr(
        wool.runtime.worker, "__path__", [*wool.runtime.worker.__path__, str(tmp_path)]
    )
    monkeypatch.delitem(sys.modules, "wool.runtime.worker.docker", raising=False)
    monkeypatch.delattr(wool.runtime.worker, "docker", raising=False)
    try:
        module = importlib.import_module("wool.runtime.worker.docker")
        assert module.__spec__.origin == str(tmp_path / "docker.py")
        assert module.OWN is True
    finally:
        sys.modules.pop("wool.runtime.worker.docker", None)


def test_hook_serves_nothing_else():
    """Other missing modules in wool's tree still fail as usual."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("wool.runtime.worker.podman")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("wool.runtime.worker.docker", "DockerWorker"),
        ("wool.runtime.discovery.docker", "DockerDiscovery"),
    ],
)
def test_upstream_module_without_wool_docker_names_the_extra(module, name):
    """wool's own module imports without wool-docker (wool's test collection
    walks it) and importing the class raises an ImportError naming the extra."""
    path = UPSTREAM / (module.replace(".", "/") + ".py")
    result = _python(
        "import importlib.util, sys\n"
        "sys.modules['wool_docker'] = None  # as if wool-docker were not installed\n"
        f"spec = importlib.util.spec_from_file_location({module!r}, {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        f"sys.modules[{module!r}] = module\n"
        "spec.loader.exec_module(module)\n"
        "try:\n"
        f"    from {module} import {name}\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
        "print(hasattr(module, 'Unrelated'))\n"
    )
    assert result.returncode == 0, result.stderr
    error, unrelated = result.stdout.strip().splitlines()
    assert error.startswith("ImportError ") and HINT in error
    assert unrelated == "False"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("wool.runtime.worker.docker", "DockerWorker"),
        ("wool.runtime.discovery.docker", "DockerDiscovery"),
    ],
)
def test_upstream_module_with_wool_docker_re_exports(module, name):
    """With wool-docker installed wool's own module gives our class."""
    path = UPSTREAM / (module.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"upstream_{name}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert getattr(loaded, name) is getattr(wool_docker, name)
    assert loaded.__all__ == [name]
