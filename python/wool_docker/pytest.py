"""pytest fixtures for testing wool routines against a Docker daemon.

Opt in per project (it is never loaded on its own): ``pytest_plugins =
["wool_docker.pytest"]`` in the top ``conftest.py``, or ``pytest -p
wool_docker.pytest``. The fixtures:

- ``wool_docker_image`` (session): the worker image for this environment, built
  with `wool_docker.build_image` on first use and reused while nothing that
  goes into it changes (its tag and its ``wool.docker.pytest.key`` label are
  the hash of the base image's id, this Python, wool, the installed
  wool-docker and the configured packages and requirements files); an image
  named with ``--wool-docker-image`` must be on the Engine;
- ``wool_docker_labels``: labels unique to the test; anything carrying them
  that outlives the test fails it (and is removed);
- ``wool_docker_session_labels`` (session): labels of this session (`RUN_LABEL`
  = `RUN_ID`); anything carrying them, and any network named with
  `NAME_PREFIX`, that outlives the session fails it (and is removed);
- ``wool_docker_network``: a private bridge network of the test;
- ``wool_docker_cli`` (session): a `DockerCli`, the ``docker`` CLI for
  arranging and checking what a test's workers did (run, inspect, wait for
  an Engine event);
- ``wool_docker_pool`` (async, needs pytest-asyncio): a started
  `wool.WorkerPool` of `DockerWorker` s on that network, found by a
  `DockerDiscovery` of the test's labels.

Configuration (command line, else ini, else environment):
``--wool-docker-base`` / ``wool_docker_base`` / ``WOOL_DOCKER_BASE``, the base
image (default: what ``wool-docker image build`` uses, ``python:X.Y-slim``);
``--wool-docker-image`` / ``wool_docker_image``, an existing image to use as
is; ini ``wool_docker_packages`` and ``wool_docker_requirements`` (lines), what
else goes into the image; ini ``wool_docker_workers``, the pool's size
(default 2). ``@pytest.mark.wool_docker(workers=N, **keywords)`` sets the size
and `DockerWorker` keywords for one test. Networks and leak checks use the
``docker`` CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from typing import Final
from typing import NoReturn
from typing import TypeVar
from uuid import uuid4

import pytest

from wool_docker import _native
from wool_docker.exceptions import WoolDockerError

KEY_LABEL: Final[str] = "wool.docker.pytest.key"
"""Image label holding the hash of what went into a plugin-built image."""

CASE_LABEL: Final[str] = "wool.docker.pytest.case"
"""Label carried by everything one test creates through the fixtures."""

RUN_LABEL: Final[str] = "wool.docker.pytest.run"
"""Label whose value is `RUN_ID` on what the session's guard watches."""

RUN_ID: Final[str] = uuid4().hex[:8]
"""This process's session id: the value of `RUN_LABEL`, and in `NAME_PREFIX`."""

NAME_PREFIX: Final[str] = f"wool-pytest-{RUN_ID}"
"""Prefix of the names of this session's containers and networks."""

IMAGE_REPOSITORY: Final[str] = "wool-docker-pytest"
"""Repository of the images the plugin builds; the tag is the key's prefix."""

_CLI_TIMEOUT: Final[float] = 120.0
"""Seconds one docker CLI call may take."""

_EVENT_MARGIN: Final[float] = 1.0
"""Seconds an event stream starts before the caller's ``since``, so a clock
tick between taking ``since`` and the event cannot hide the event; filter on
something unique to the test so that earlier events of others cannot match."""

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options and ini values."""
    group = parser.getgroup("wool-docker")
    group.addoption("--wool-docker-base", help="base image of the worker image")
    group.addoption(
        "--wool-docker-image", help="use this worker image as is instead of building"
    )
    parser.addini("wool_docker_base", "base image of the worker image")
    parser.addini("wool_docker_image", "use this worker image as is")
    parser.addini(
        "wool_docker_packages", "packages for the worker image", type="linelist"
    )
    parser.addini(
        "wool_docker_requirements", "requirements files for the image", type="linelist"
    )
    parser.addini("wool_docker_workers", "workers in wool_docker_pool", default="2")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        "wool_docker(workers=N, **keywords): wool_docker_pool's size and "
        "DockerWorker keywords for this test",
    )


def _setting(config: pytest.Config, name: str, env: str | None = None) -> str | None:
    """A setting from the command line, else the ini file, else ``env``."""
    value = config.getoption(name) or config.getini(name)
    if not value and env is not None:
        value = os.environ.get(env)
    return str(value) if value else None


def _fail(message: str) -> NoReturn:
    """Fail the test with ``message``, without a traceback into the plugin."""
    pytest.fail(f"wool-docker: {message}", pytrace=False)


def _cli_on_path() -> None:
    """Fail with what to do when there is no docker CLI."""
    if shutil.which("docker") is None:
        _fail("the docker CLI is not on PATH; the wool-docker fixtures need it")


class DockerCli:
    """The docker CLI, for arranging and checking what a test's workers did.

    A failed command fails the test with its error output.
    """

    def run(
        self, *args: str, check: bool = True, timeout: float = _CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` and return the finished process.

        :param args:
            The docker CLI arguments.
        :param check:
            Fail the test if the command exits non-zero.
        :param timeout:
            Seconds it may take (`subprocess.TimeoutExpired` after).
        :returns:
            The completed process, with text output.
        """
        __tracebackhide__ = True
        _cli_on_path()
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    async def arun(self, *args: str, timeout: float = _CLI_TIMEOUT) -> str:
        """Run ``docker ARGS`` without blocking the event loop; fail the test
        if it exits non-zero.

        :param args:
            The docker CLI arguments.
        :param timeout:
            Seconds it may take (`TimeoutError` after; the process is killed).
        :returns:
            Its standard output.
        """
        __tracebackhide__ = True
        _cli_on_path()
        process = await asyncio.create_subprocess_exec(
            "docker",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {process.returncode}: "
                f"{stderr.decode().strip()}"
            )
        return stdout.decode()

    def containers(self, label: str) -> list[str]:
        """Full ids of every container, running or not, that carries ``label``.

        :param label:
            A ``key=value`` (or ``key``) label filter.
        """
        result = self.run("ps", "-a", "-q", "--no-trunc", "--filter", f"label={label}")
        return result.stdout.split()

    def networks(self, label: str) -> list[str]:
        """Names of the networks that carry ``label``.

        :param label:
            A ``key=value`` (or ``key``) label filter.
        """
        listing = ("network", "ls", "--format", "{{.Name}}")
        return self.run(*listing, "--filter", f"label={label}").stdout.split()

    async def inspect(self, container: str) -> dict[str, Any]:
        """The ``docker inspect`` document of one container.

        :param container:
            Container name or id.
        """
        (document,) = json.loads(await self.arun("container", "inspect", container))
        return document

    async def event(self, *filters: str, since: float, timeout: float) -> dict[str, Any]:
        """Wait for the first Engine event matching ``filters`` since ``since``.

        Events that happened between ``since`` and this call are replayed, so
        take ``since`` before the action and wait afterwards.

        :param filters:
            ``docker events --filter`` values, e.g. ``event=destroy``.
        :param since:
            Unix time the event may not precede.
        :param timeout:
            Seconds to wait.
        :returns:
            The event as the Engine reports it.
        :raises TimeoutError:
            If no such event happens in time.
        """
        __tracebackhide__ = True
        _cli_on_path()
        args = ["events", "--since", f"{since - _EVENT_MARGIN:.3f}"]
        args += ["--format", "{{json .}}"]
        for value in filters:
            args += ["--filter", value]
        process = await asyncio.create_subprocess_exec(
            "docker",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await process.stdout.readline()
        finally:
            if process.returncode is None:
                process.kill()
            _, stderr = await process.communicate()
        if not line:
            pytest.fail(f"docker events ended early: {stderr.decode().strip()}")
        return json.loads(line)

    def remove_containers(self, *containers: str) -> None:
        """Force-remove containers and their volumes; gone already is fine."""
        if containers:
            self.run("rm", "--force", "--volumes", *containers, check=False)

    def remove_network(self, network: str) -> None:
        """Remove a network; gone already is fine, anything else fails the test."""
        __tracebackhide__ = True
        result = self.run("network", "rm", network, check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            pytest.fail(f"could not remove network {network}: {result.stderr.strip()}")

    def sweep(self, label: str, name_prefix: str | None = None) -> str | None:
        """Remove the containers carrying ``label``, then the networks carrying
        it or named with ``name_prefix``.

        :param label:
            A ``key=value`` label filter.
        :param name_prefix:
            Networks whose names start with it go too.
        :returns:
            What was removed, to name in a failure, or None if nothing was.
        """
        containers = self.containers(label)
        self.remove_containers(*containers)
        networks = self.networks(label)
        if name_prefix is not None:
            listing = self.run("network", "ls", "--format", "{{.Name}}").stdout.split()
            networks += [n for n in listing if n.startswith(name_prefix)]
        networks = sorted(set(networks))
        for network in networks:
            self.remove_network(network)
        if not containers and not networks:
            return None
        return f"containers {containers} and networks {networks} ({label})"


def _wait(call: Callable[[], Awaitable[T]]) -> T:
    """Run one native call to completion from synchronous code (the native
    module binds its awaitables to the loop running when they are made)."""

    async def wait() -> T:
        return await call()

    return asyncio.run(wait())


@pytest.fixture(scope="session")
def wool_docker_engine() -> str:
    """The Docker daemon's address; a clear failure when none is reachable."""
    try:
        info = _wait(lambda: _native.engine_info(None))
    except WoolDockerError as error:
        _fail(f"no Docker daemon for the tests: {error}")
    return info["host"]


def image_key(
    *, base_id: str, packages: list[str], requirements: list[str], root: Path
) -> str:
    """The hash of what goes into a worker image.

    :param base_id:
        The base image's id.
    :param packages:
        Package paths (relative to ``root``) or requirement strings.
    :param requirements:
        Requirements files, relative to ``root``.
    :param root:
        The directory relative paths start from.
    :returns:
        A sha256 hex digest.
    """
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)

    wool_docker = metadata.distribution("wool-docker")
    add(base_id, sys.version, metadata.version("wool"), wool_docker.version)
    # RECORD holds the hash of every installed file of wool-docker.
    add(wool_docker.read_text("RECORD") or "")
    for package in packages:
        path = root / package
        add("package", package)
        if path.is_file():
            add(path.read_bytes())
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path)
                if file.is_file() and not any(
                    part.startswith(".") or part == "__pycache__"
                    for part in relative.parts
                ):
                    add(relative.as_posix(), file.read_bytes())
    for requirement in requirements:
        add("requirements", requirement, (root / requirement).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def wool_docker_image(pytestconfig: pytest.Config, wool_docker_engine: str) -> str:
    """The worker image for this environment: reused, or built once."""
    given = _setting(pytestconfig, "wool_docker_image")
    if given:
        try:
            _wait(lambda: _native.inspect_image(given, None))
        except WoolDockerError as error:
            _fail(f"the worker image {given!r} is not on the Docker Engine: {error}")
        return given
    from wool_docker.image import build_image

    root = pytestconfig.rootpath
    python = "{}.{}".format(*sys.version_info[:2])
    base = _setting(pytestconfig, "wool_docker_base", "WOOL_DOCKER_BASE")
    base = base or f"python:{python}-slim"
    packages = list(pytestconfig.getini("wool_docker_packages"))
    requirements = list(pytestconfig.getini("wool_docker_requirements"))
    try:
        base_id = _wait(lambda: _native.inspect_image(base, None))["id"]
        key = image_key(
            base_id=base_id, packages=packages, requirements=requirements, root=root
        )
        tag = f"{IMAGE_REPOSITORY}:{key[:16]}"
        try:
            found = _wait(lambda: _native.inspect_image(tag, None))
        except WoolDockerError:
            found = {}
        labels: dict[str, str] = found.get("labels") or {}
        if labels.get(KEY_LABEL) != key:
            asyncio.run(
                build_image(
                    tag,
                    base=base,
                    packages=[_package(root, package) for package in packages],
                    requirements=[root / r for r in requirements],
                    labels={KEY_LABEL: key},
                )
            )
    except (WoolDockerError, OSError) as error:
        _fail(f"could not build the worker image from {base}: {error}")
    return tag


def _package(root: Path, package: str) -> str:
    """A package as `build_image` takes it: a path if one exists, else as given."""
    path = root / package
    return str(path) if path.exists() else package


@pytest.fixture(scope="session")
def wool_docker_cli() -> DockerCli:
    """The docker CLI, for arranging and checking what a test's workers did."""
    return DockerCli()


@pytest.fixture
def wool_docker_labels(
    wool_docker_engine: str, wool_docker_cli: DockerCli
) -> Iterator[dict[str, str]]:
    """Labels unique to this test; what carries them must not outlive it."""
    case = uuid4().hex[:12]
    yield {CASE_LABEL: case}
    leaked = wool_docker_cli.sweep(f"{CASE_LABEL}={case}")
    if leaked:
        _fail(f"the test leaked {leaked}; they have been removed")


@pytest.fixture(scope="session")
def wool_docker_session_labels(
    wool_docker_engine: str, wool_docker_cli: DockerCli
) -> Iterator[dict[str, str]]:
    """Labels of this session, for what tests create by hand; what carries
    them, and any network named with `NAME_PREFIX`, must not outlive it."""
    yield {RUN_LABEL: RUN_ID}
    leaked = wool_docker_cli.sweep(f"{RUN_LABEL}={RUN_ID}", NAME_PREFIX)
    if leaked:
        _fail(f"the session leaked {leaked}; they have been removed")


@pytest.fixture
def wool_docker_network(
    wool_docker_labels: dict[str, str], wool_docker_cli: DockerCli
) -> Iterator[str]:
    """A private bridge network of this test, removed afterwards."""
    case = wool_docker_labels[CASE_LABEL]
    name = f"{NAME_PREFIX}-{case}"
    wool_docker_cli.run("network", "create", "--label", f"{CASE_LABEL}={case}", name)
    yield name
    # A container still attached keeps the network; the leak guard reports both.
    wool_docker_cli.run("network", "rm", name, check=False)


def _pool_fixture() -> Any:
    """``wool_docker_pool``, defined only when pytest-asyncio is installed."""
    try:
        import pytest_asyncio
    except ImportError:

        @pytest.fixture(name="wool_docker_pool")
        def without_asyncio() -> None:
            _fail("wool_docker_pool is async: install pytest-asyncio")

        return without_asyncio

    @pytest_asyncio.fixture(name="wool_docker_pool")
    async def pool_fixture(
        request: pytest.FixtureRequest,
        wool_docker_image: str,
        wool_docker_network: str,
        wool_docker_labels: dict[str, str],
    ) -> AsyncIterator[Any]:
        """A started `wool.WorkerPool` of `DockerWorker` s of this test."""
        import wool

        from wool_docker.discovery import DockerDiscovery
        from wool_docker.worker import DockerWorker

        marker = request.node.get_closest_marker("wool_docker")
        keywords = dict(marker.kwargs) if marker else {}
        workers = int(
            keywords.pop("workers", request.config.getini("wool_docker_workers"))
        )
        keywords.setdefault("log_output", False)

        def worker(*tags: str, **options: Any) -> DockerWorker:
            return DockerWorker(
                *tags,
                image=wool_docker_image,
                network=wool_docker_network,
                labels=wool_docker_labels,
                name_prefix=NAME_PREFIX,
                **keywords,
                **options,
            )

        pool = wool.WorkerPool(
            spawn=workers,
            worker=worker,
            discovery=DockerDiscovery(
                network=wool_docker_network, labels=wool_docker_labels
            ),
        )
        async with pool:
            yield pool

    return pool_fixture


wool_docker_pool = _pool_fixture()
