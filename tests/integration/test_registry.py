"""Images from a registry: ``wool-docker image build --push``, and workers
that pull their image, against a private registry with TLS and htpasswd
authentication (see `registry`), with credentials read from a
``DOCKER_CONFIG`` the test writes, as the docker CLI reads them.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from wool_docker import ImageMismatchError
from wool_docker import ImageNotFoundError
from wool_docker import RegistryAuthError
from wool_docker import RegistryUnreachableError
from wool_docker import _native
from wool_docker.pytest import DockerCli

from . import registry
from . import routines
from .registry import Registry

pytestmark = pytest.mark.integration

_RUN: Final[str] = uuid.uuid4().hex[:8]
"""This run's tag: runs sharing an Engine never share an image."""

REPOSITORY: Final[str] = "wool-docker-test/worker"
"""The worker image's repository in the registry."""

SPAWN: Final[int] = 4
"""Workers in the pool that starts by pulling."""

BURST: Final[int] = 8
"""Workers started at once on a missing image."""

_docker = DockerCli()


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with TLS and basic authentication, for this module."""
    with registry.serve(tmp_path_factory.mktemp("registry")) as served:
        yield served


@pytest.fixture(scope="module")
def pushed(private_registry: Registry, image: str) -> Iterator[str]:
    """The worker image, built by ``wool-docker image build --push`` into the
    registry with the credentials of a ``DOCKER_CONFIG``; the local tag is
    removed, so the Engine has it only in the registry."""
    reference = private_registry.reference(REPOSITORY, _RUN)
    config = private_registry.docker_config("login")
    # The base the worker image under test was built on (scripts/build.sh's).
    base = os.environ.get("WOOL_DOCKER_BASE") or "wool-docker-base:bookworm"
    result = subprocess.run(
        [
            sys.executable, "-m", "wool_docker.cli", "image", "build",
            "--tag", reference, "--base", base, "--push",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": str(config)},
        timeout=600,
    )  # fmt: skip
    try:
        assert result.returncode == 0, result.stderr
        assert private_registry.requests(f"PUT /v2/{REPOSITORY}/manifests/{_RUN}") == 1
        _remove(reference)
        yield reference
    finally:
        _remove(reference)


@pytest.fixture
def login(private_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's ``DOCKER_CONFIG``: logged in to the registry."""
    config = private_registry.docker_config("login")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


def _remove(reference: str) -> None:
    """Remove a tag from the Engine (its layers stay if others use them)."""
    _docker.run("image", "rm", "--force", reference, check=False)


def _context(dockerfile: str) -> bytes:
    """A build context of one Dockerfile, as an uncompressed tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _on_engine(reference: str) -> bool:
    return _docker.run("image", "inspect", reference, check=False).returncode == 0


class TestRegistry:
    @pytest.mark.asyncio
    async def test_pool_with_image_only_in_registry(
        self, case, pushed, login, private_registry
    ):
        """Test a pool whose image is only in a private registry.

        Given:
            The worker image pushed by ``wool-docker image build --push`` to a
            registry with TLS and basic authentication, not on the Engine, and
            a ``DOCKER_CONFIG`` logged in to it
        When:
            A pool of 4 `DockerWorker`s of that image (default keywords, wool's
            default quorum) is entered and a burst of 8 routines gathered
        Then:
            It should pull the image, every worker should run a routine, and
            nothing should be left after the pool exits
        """
        # Arrange
        assert not _on_engine(pushed)

        # Act
        async with case.pool("docker", SPAWN, image=pushed):
            hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(2 * SPAWN)))

        # Assert
        assert len(set(hosts)) == SPAWN
        assert _on_engine(pushed)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_burst_on_missing_image(
        self, case, pushed, login, private_registry
    ):
        """Test a burst of starts on an image the Engine lacks.

        Given:
            The image only in the registry, and the number of manifest requests
            one pull of it makes (measured by one pull)
        When:
            8 `DockerWorker`s of it are started at once
        Then:
            The registry should see exactly one pull's manifest requests, and
            every worker should start
        """
        # Arrange
        manifests = f"/v2/{REPOSITORY}/manifests/{_RUN}"
        _remove(pushed)
        before = private_registry.requests(manifests)
        await _native.pull_image(pushed)
        one_pull = private_registry.requests(manifests) - before
        _remove(pushed)
        before = private_registry.requests(manifests)
        workers = [case.worker(image=pushed, log_output=False) for _ in range(BURST)]

        # Act
        try:
            await asyncio.gather(*(w.start() for w in workers))
        finally:
            await asyncio.gather(*(w.stop() for w in workers if w.container))

        # Assert
        assert one_pull >= 1
        assert private_registry.requests(manifests) - before == one_pull
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_wrong_credentials(
        self, case, pushed, private_registry, monkeypatch
    ):
        """Test a start whose registry refuses the credentials.

        Given:
            The image only in the registry, and a ``DOCKER_CONFIG`` with the
            wrong password
        When:
            A `DockerWorker` of it is started
        Then:
            It should raise `RegistryAuthError` naming the registry and the
            image, and leave no container
        """
        # Arrange
        _remove(pushed)
        wrong = private_registry.docker_config("wrong", password="not-the-password")
        monkeypatch.setenv("DOCKER_CONFIG", str(wrong))
        worker = case.worker(image=pushed)

        # Act
        with pytest.raises(RegistryAuthError) as caught:
            await worker.start()

        # Assert
        assert caught.value.registry == private_registry.host
        assert caught.value.image == pushed
        assert "docker login" in str(caught.value)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_push_with_wrong_credentials(
        self, image, private_registry, monkeypatch
    ):
        """Test a push whose registry refuses the credentials.

        Given:
            A local image tagged for the registry, and a ``DOCKER_CONFIG``
            with the wrong password
        When:
            It is pushed
        Then:
            It should raise `RegistryAuthError` naming the registry, and the
            registry should store no manifest for it
        """
        # Arrange
        tag = f"denied-{_RUN}"
        reference = private_registry.reference(REPOSITORY, tag)
        wrong = private_registry.docker_config("wrong", password="not-the-password")
        monkeypatch.setenv("DOCKER_CONFIG", str(wrong))
        _docker.run("image", "tag", image, reference)
        try:
            # Act
            with pytest.raises(RegistryAuthError) as caught:
                await _native.push_image(reference)
        finally:
            _remove(reference)

        # Assert
        assert caught.value.registry == private_registry.host
        assert "push" in str(caught.value)
        assert private_registry.requests(f"PUT /v2/{REPOSITORY}/manifests/{tag}") == 0

    @pytest.mark.asyncio
    async def test_start_with_missing_tag(self, case, login, private_registry):
        """Test a start whose tag is not in the registry.

        Given:
            A ``DOCKER_CONFIG`` logged in to the registry, and a tag it lacks
        When:
            A `DockerWorker` of it is started
        Then:
            It should raise `ImageNotFoundError` naming the registry and the
            reference, and leave no container
        """
        # Arrange
        missing = private_registry.reference(REPOSITORY, f"missing-{_RUN}")
        worker = case.worker(image=missing)

        # Act
        with pytest.raises(ImageNotFoundError) as caught:
            await worker.start()

        # Assert
        assert caught.value.registry == private_registry.host
        assert caught.value.image == missing
        assert "not in registry" in str(caught.value)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_registry_down(self, case, login):
        """Test a start whose registry does not answer.

        Given:
            An image reference naming a registry address nothing listens on
        When:
            A `DockerWorker` of it is started
        Then:
            It should raise `RegistryUnreachableError` naming that registry,
            and leave no container
        """
        # Arrange
        down = f"127.0.0.1:{registry.free_port()}"
        worker = case.worker(image=f"{down}/{REPOSITORY}:{_RUN}")

        # Act
        with pytest.raises(RegistryUnreachableError) as caught:
            await worker.start()

        # Assert
        assert caught.value.registry == down
        assert "cannot reach registry" in str(caught.value)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_pull_never(self, case, pushed, login, private_registry):
        """Test ``pull="never"`` with the image only in the registry.

        Given:
            The image only in the registry
        When:
            A `DockerWorker` of it with ``pull="never"`` is started
        Then:
            It should raise `ImageNotFoundError` without a registry, and the
            registry should get no request
        """
        # Arrange
        _remove(pushed)
        before = private_registry.requests("/v2/")
        worker = case.worker(image=pushed, pull="never")

        # Act
        with pytest.raises(ImageNotFoundError) as caught:
            await worker.start()

        # Assert
        assert caught.value.registry is None
        assert private_registry.requests("/v2/") == before
        assert not _on_engine(pushed)
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_start_with_pulled_image_of_another_python(
        self, case, pushed, login, private_registry
    ):
        """Test the version check on a pulled image.

        Given:
            An image in the registry labelled with another Python minor
            version, not on the Engine
        When:
            A `DockerWorker` of it is started
        Then:
            It should pull it and raise `ImageMismatchError`, leaving no
            container
        """
        # Arrange
        other = private_registry.reference(REPOSITORY, f"py2-{_RUN}")
        await _native.pull_image(pushed)
        await _native.build_image(
            _context(f"FROM {pushed}\nLABEL wool.docker.python=2.7\n"), other
        )
        try:
            await _native.push_image(other)
            _remove(other)
            worker = case.worker(image=other)

            # Act
            with pytest.raises(ImageMismatchError, match="Python 2.7"):
                await worker.start()

            # Assert
            assert _on_engine(other)
            assert case.containers() == []
        finally:
            _remove(other)
