"""Fixtures for the tests that run `DockerWorker` against the real Docker Engine.

They stand on the project's own pytest plugin, `wool_docker.pytest` (loaded by
``tests/conftest.py``): ``docker``, ``image``, ``network`` and ``selector``
are its ``wool_docker_cli``, ``wool_docker_image``, ``wool_docker_network``
and ``wool_docker_labels`` under the suite's shorter names, and its leak
guards hold. A container or network carrying a test's labels that outlives
the test fails it; one carrying the session's (`RUN_LABEL` = `RUN_ID`, which
containers a test starts by hand carry), or a network named with
`NAME_PREFIX`, that outlives the session fails the run. Either is removed
first, so a failed run leaves nothing behind.

The docker CLI is used only to arrange and check what the code under test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Final

import pytest
import pytest_asyncio
import wool
from wool.runtime.worker.local import LocalWorker

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker.pytest import CASE_LABEL
from wool_docker.pytest import NAME_PREFIX
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL
from wool_docker.pytest import DockerCli

from .multinode import Swarm
from .multinode import two_node_swarm

_log = logging.getLogger(__name__)


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark every test of this package ``integration``.

    All of them need the Engine (or run host commands such as ``userdel``), so
    the fast tier's ``-m "not integration"`` must never select one, including a
    new module that forgets its own ``pytestmark``.
    """
    item.add_marker(pytest.mark.integration)


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
    id: str
    """The value of this test's `CASE_LABEL` (the plugin's ``wool_docker_labels``)."""
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


@pytest.fixture(scope="session", autouse=True)
def _no_leaks(wool_docker_session_labels: dict[str, str]) -> None:
    """Every test here runs under the plugin's session leak guard, whether or
    not it starts containers by hand."""


@pytest.fixture(scope="session")
def docker(wool_docker_cli: DockerCli) -> DockerCli:
    """The docker CLI (the plugin's ``wool_docker_cli``)."""
    return wool_docker_cli


@pytest.fixture(scope="session")
def image(wool_docker_image: str) -> str:
    """The worker image under test (the plugin's ``wool_docker_image``, which
    ``tests/conftest.py`` points at ``WOOL_DOCKER_IMAGE``)."""
    return wool_docker_image


@pytest.fixture
def network(wool_docker_network: str) -> str:
    """A bridge network of this test (the plugin's ``wool_docker_network``)."""
    return wool_docker_network


@pytest.fixture
def selector(wool_docker_labels: dict[str, str]) -> dict[str, str]:
    """A selector label unique to this test, so tests never see each other
    (the plugin's ``wool_docker_labels``).

    Containers a test starts by hand carry it and `RUN_LABEL`; discovery
    under test selects on it alone.
    """
    return wool_docker_labels


@pytest_asyncio.fixture
async def case(
    docker: DockerCli, image: str, network: str, selector: dict[str, str]
) -> AsyncIterator[Case]:
    """This test's label, network and workers.

    Afterwards stops the workers the test left running; a container of this
    test that remains after that fails the test (the plugin's leak guard).
    """
    case = Case(docker=docker, image=image, network=network, id=selector[CASE_LABEL])
    yield case
    for worker in case.workers:
        if worker.container is not None:
            try:
                async with asyncio.timeout(60):
                    await worker.stop(grace=None)
            except Exception:
                _log.exception("could not stop worker %s", worker.container)


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
