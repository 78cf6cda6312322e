"""Fixtures for the tests that run `DockerWorker` against the real Docker Engine.

Every container and network a test creates carries this run's id: containers
in the ``wool.docker.test`` label and in their names, networks in their
names. A per-test label (``wool.docker.test.case``) tells one test's
containers from another's. After the session, anything still carrying the
run id is removed and fails the run: a leaked container is a failed test.

The docker CLI is used only to arrange and check what the code under test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Final
from uuid import uuid4

import pytest
import pytest_asyncio
import wool
from wool.runtime.worker.local import LocalWorker

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker

from .multinode import Swarm
from .multinode import two_node_swarm

RUN_ID: Final[str] = uuid4().hex[:8]
"""This session's id; in every label and name the tests create."""

RUN_LABEL: Final[str] = "wool.docker.test"
"""Label key whose value is `RUN_ID` on every container of this session."""

CASE_LABEL: Final[str] = "wool.docker.test.case"
"""Label key whose value names the one test that created a container."""

NAME_PREFIX: Final[str] = f"wdt-{RUN_ID}"
"""Prefix of every container and network name of this session."""

IMAGE: Final[str] = os.environ.get("WOOL_DOCKER_IMAGE", "wool-docker-worker:dev")
"""The worker image under test (built by ``scripts/build.sh``)."""

_CLI_TIMEOUT: Final[float] = 120.0
"""Seconds one docker CLI call may take before the test fails."""

_EVENT_MARGIN: Final[float] = 1.0
"""Seconds an event stream starts before the caller's ``since``, so a clock
tick between taking ``since`` and the event cannot hide the event. Every
stream filters on something unique to one test, so earlier events of other
tests cannot match."""

_log = logging.getLogger(__name__)


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark every test of this package ``integration``.

    All of them need the Engine (or run host commands such as ``userdel``), so
    the fast tier's ``-m "not integration"`` must never select one, including a
    new module that forgets its own ``pytestmark``.
    """
    item.add_marker(pytest.mark.integration)


_networks = itertools.count()


class DockerCli:
    """The docker CLI, for arranging and checking what `DockerWorker` did."""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` and return the finished process.

        :param args:
            The docker CLI arguments.
        :param check:
            Fail the test if the command exits non-zero.
        :returns:
            The completed process, with text output.
        """
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    async def arun(self, *args: str) -> str:
        """Run ``docker ARGS`` without blocking the event loop.

        :param args:
            The docker CLI arguments.
        :returns:
            Its standard output.
        """
        process = await asyncio.create_subprocess_exec(
            "docker",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(_CLI_TIMEOUT):
            stdout, stderr = await process.communicate()
        if process.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {process.returncode}: "
                f"{stderr.decode().strip()}"
            )
        return stdout.decode()

    def containers(self, label: str) -> list[str]:
        """Ids of every container, running or not, that carries ``label``.

        :param label:
            A ``key=value`` label filter.
        :returns:
            Full container ids.
        """
        result = self.run("ps", "-a", "-q", "--no-trunc", "--filter", f"label={label}")
        return result.stdout.split()

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
        """Remove a network; gone already is fine."""
        result = self.run("network", "rm", network, check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            pytest.fail(f"could not remove network {network}: {result.stderr.strip()}")


@dataclass
class Case:
    """What one test creates: its label, its network, and its workers.

    `worker` builds a `DockerWorker` from the image under test on the test's
    network, labelled and named for this run and this test; any keyword
    overrides those defaults.
    """

    docker: DockerCli
    image: str
    network: str
    id: str = field(default_factory=lambda: uuid4().hex[:12])
    workers: list[DockerWorker] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        """The labels every container of this test carries."""
        return {RUN_LABEL: RUN_ID, CASE_LABEL: self.id}

    @property
    def label(self) -> str:
        """The ``key=value`` filter selecting this test's containers."""
        return f"{CASE_LABEL}={self.id}"

    @property
    def name_prefix(self) -> str:
        """The container name prefix of this run."""
        return NAME_PREFIX

    def options(self, **overrides: Any) -> dict[str, Any]:
        """`DockerWorker` keywords for this test's image, network, labels and
        names, with ``overrides``: for workers the test must not keep (see
        `worker`)."""
        return {
            "image": self.image,
            "network": self.network,
            "labels": self.labels,
            "name_prefix": self.name_prefix,
            **overrides,
        }

    def worker(self, *tags: str, **options: Any) -> DockerWorker:
        """A new, unstarted worker of this test.

        :param tags:
            The worker's tags.
        :param options:
            `DockerWorker` keywords overriding this test's defaults.
        """
        worker = DockerWorker(*tags, **self.options(**options))
        self.workers.append(worker)
        return worker

    def pool(self, kind: str, spawn: int = 1, **keywords: Any) -> wool.WorkerPool:
        """A pool of ``spawn`` workers of one kind, built with ``keywords``.

        The same scenario on both kinds: ``"docker"`` is `DockerWorker`s of
        this test with a `DockerDiscovery` of its labels, ``"local"`` wool's
        own `LocalWorker`s; both with wool's default quorum.
        """
        if kind == "local":
            return wool.WorkerPool(
                spawn=spawn,
                worker=lambda *tags, **kw: LocalWorker(*tags, **keywords, **kw),
            )
        return wool.WorkerPool(
            spawn=spawn,
            worker=lambda *tags, **kw: self.worker(
                *tags, log_output=False, **keywords, **kw
            ),
            discovery=DockerDiscovery(network=self.network, labels=self.labels),
        )

    def containers(self) -> list[str]:
        """Ids of this test's containers, running or not."""
        return self.docker.containers(self.label)


class ContainerOutput(logging.Handler):
    """Container output as `DockerWorker` forwards it to ``wool_docker.worker``.

    Lets a test wait for a line a container prints, e.g. a routine announcing
    that it runs. Records arrive on the native core's threads and are handed
    to the test's event loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(logging.INFO)
        self._loop = loop
        self._lines: list[str] = []
        self._waiters: list[tuple[str, asyncio.Future[str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Hand one record to the event loop."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._receive, record.getMessage())

    def _receive(self, line: str) -> None:
        """Keep a line and wake whoever waits for it."""
        self._lines.append(line)
        for needle, waiter in self._waiters:
            if needle in line and not waiter.done():
                waiter.set_result(line)

    async def wait_for(self, needle: str, *, timeout: float) -> str:
        """Wait until a line containing ``needle`` was printed.

        :param needle:
            Text the line contains.
        :param timeout:
            Seconds to wait.
        :returns:
            The line, as logged (``[container] text``).
        :raises TimeoutError:
            If no such line arrives in time.
        """
        for line in self._lines:
            if needle in line:
                return line
        waiter: asyncio.Future[str] = self._loop.create_future()
        entry = (needle, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiters.remove(entry)


IDENTITY: Final[str] = "worker.wool.test"
"""The name in the test worker certificate, and the identity it advertises."""


@pytest.fixture(scope="session")
def docker() -> DockerCli:
    """The docker CLI."""
    return DockerCli()


@pytest.fixture(scope="session", autouse=True)
def _no_leaks(docker: DockerCli) -> Iterator[None]:
    """Fail the run if anything carrying this run's id outlives the tests.

    Removes what it finds first, so a failed run leaves nothing behind either.
    """
    yield
    containers = docker.containers(f"{RUN_LABEL}={RUN_ID}")
    docker.remove_containers(*containers)
    listing = docker.run("network", "ls", "--format", "{{.Name}}")
    networks = [n for n in listing.stdout.split() if n.startswith(NAME_PREFIX)]
    for network in networks:
        docker.remove_network(network)
    if containers or networks:
        pytest.fail(
            f"the tests leaked containers {containers} and networks {networks} "
            f"(run {RUN_ID}); they have been removed"
        )


@pytest.fixture(scope="session")
def image(docker: DockerCli) -> str:
    """The worker image under test; fails the test when it is not built."""
    result = docker.run("image", "inspect", IMAGE, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"worker image {IMAGE!r} is not on the Docker Engine "
            f"({result.stderr.strip()}); build it with scripts/build.sh "
            f"or point WOOL_DOCKER_IMAGE at one",
            pytrace=False,
        )
    return IMAGE


@pytest.fixture
def network(docker: DockerCli) -> Iterator[str]:
    """A bridge network of this test, removed afterwards."""
    name = f"{NAME_PREFIX}-{next(_networks)}"
    docker.run("network", "create", "--label", f"{RUN_LABEL}={RUN_ID}", name)
    try:
        yield name
    finally:
        docker.remove_network(name)


@pytest.fixture
def selector() -> dict[str, str]:
    """A selector label unique to this test, so tests never see each other.

    Containers a test starts by hand carry it and `RUN_LABEL` (for the leak
    check); discovery under test selects on it alone.
    """
    return {CASE_LABEL: f"{RUN_ID}-{uuid4().hex[:6]}"}


@pytest_asyncio.fixture
async def case(docker: DockerCli, image: str, network: str) -> AsyncIterator[Case]:
    """This test's label, network and workers.

    Afterwards stops the workers the test left running; a container of this
    test that remains after that is removed and fails the test.
    """
    case = Case(docker=docker, image=image, network=network)
    yield case
    for worker in case.workers:
        if worker.container is not None:
            try:
                async with asyncio.timeout(60):
                    await worker.stop(grace=None)
            except Exception:
                _log.exception("could not stop worker %s", worker.container)
    leaked = case.containers()
    docker.remove_containers(*leaked)
    if leaked:
        pytest.fail(f"the test leaked containers {leaked}; they have been removed")


@pytest_asyncio.fixture
async def output() -> AsyncIterator[ContainerOutput]:
    """What worker containers print, as forwarded to ``wool_docker.worker``."""
    logger = logging.getLogger("wool_docker.worker")
    handler = ContainerOutput(asyncio.get_running_loop())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def two_nodes(image: str) -> Iterator[Swarm]:
    """A real two-node Swarm of this machine's Engine and a second one.

    See `multinode`: the machine's Engine is the manager, a second Engine in a
    network namespace the worker, both with the image under test, and an
    attachable overlay spans them. Module scope: built once for a module and
    taken down (swarm left, second Engine stopped, namespace and data
    removed) when the module ends. The single-node ``swarm`` fixture of
    `test_modes` initialises a swarm of its own for its module and leaves it
    at its end, so in one session the two run one after the other, never at
    once; a module must not use both. Fails at setup if the machine's Engine
    is in a swarm already. Its services and task containers carry this run's
    label, its overlay this run's name prefix.
    """
    with two_node_swarm(
        image, name_prefix=NAME_PREFIX, labels={RUN_LABEL: RUN_ID}
    ) as swarm:
        yield swarm


def _openssl(*args: str, cwd: Path) -> None:
    """Run ``openssl ARGS`` in ``cwd``; fail the test if it fails."""
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture
def credentials(tmp_path: Path) -> wool.WorkerCredentials:
    """mTLS material: a fresh CA and a worker certificate for ``worker.wool.test``.

    The certificate serves as the worker's server certificate and as the
    pool's client certificate, so it is valid for both uses.
    """
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=wool-docker test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tmp_path,
    )
    _openssl(
        "req",
        *ec,
        "-keyout",
        "worker-key.pem",
        "-out",
        "worker.csr",
        "-subj",
        f"/CN={IDENTITY}",
        cwd=tmp_path,
    )
    (tmp_path / "worker.ext").write_text(
        f"subjectAltName=DNS:{IDENTITY}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "worker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "worker.ext",
        "-out",
        "worker.pem",
        cwd=tmp_path,
    )
    return wool.WorkerCredentials.from_files(
        ca_path=tmp_path / "ca.pem",
        key_path=tmp_path / "worker-key.pem",
        cert_path=tmp_path / "worker.pem",
        mutual=True,
    )
