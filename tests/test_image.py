"""Tests for `wool_docker.image`, without a Docker Engine."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import sys
import tarfile
import types
import zipfile
from importlib import metadata
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
import wool.protocol

import wool_docker
from wool_docker import image as image_module
from wool_docker.exceptions import ImageBuildError
from wool_docker.exceptions import ImageMismatchError
from wool_docker.exceptions import WoolDockerError
from wool_docker.image import build_context
from wool_docker.image import build_image
from wool_docker.image import image_labels
from wool_docker.image import prepare_wheelhouse
from wool_docker.image import repack_wheel

PYTHON = "{}.{}".format(*sys.version_info[:2])

FAKE_FILES = {
    "fakepkg/__init__.py": b"VALUE = 1\n",
    "fakepkg/_native.abi3.so": b"\x7fELF not really",
    "fakepkg/data/schema.json": b'{"a": 1}\n',
    "fakepkg-1.0.dist-info/METADATA": (
        b"Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n"
    ),
    "fakepkg-1.0.dist-info/WHEEL": (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
        b"Tag: cp311-abi3-linux_x86_64\n"
    ),
    "fakepkg-1.0.dist-info/entry_points.txt": (
        b"[console_scripts]\nfake = fakepkg:main\n"
    ),
}
"""Files of the fake installed distribution that belong in its wheel."""

INSTALLER_FILES = {
    "fakepkg/__pycache__/__init__.cpython-311.pyc": b"\x00bytecode",
    "fakepkg-1.0.dist-info/INSTALLER": b"pip\n",
    "fakepkg-1.0.dist-info/REQUESTED": b"",
    "fakepkg-1.0.dist-info/direct_url.json": (
        b'{"archive_info": {}, "url": "file:///tmp/fakepkg-1.0.whl"}'
    ),
}
"""Files an install adds that a repacked wheel must leave out."""


def _write_distribution(site: Path, files: dict[str, bytes]) -> metadata.Distribution:
    """Write an installed distribution, with a RECORD listing its files."""
    for name, data in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    record = [f"{name},sha256=stale,{len(data)}" for name, data in files.items()]
    record.append("../../../bin/fake,sha256=stale,42")
    record.append("fakepkg-1.0.dist-info/RECORD,,")
    (site / "fakepkg-1.0.dist-info" / "RECORD").write_text("\n".join(record) + "\n")
    return metadata.PathDistribution(site / "fakepkg-1.0.dist-info")


def _read_dockerfile(context: bytes) -> str:
    """Read the Dockerfile out of a build context."""
    with tarfile.open(fileobj=io.BytesIO(context)) as archive:
        member = archive.extractfile("Dockerfile")
        assert member is not None
        return member.read().decode()


def _sha256(data: bytes) -> str:
    """A RECORD hash field for some bytes."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return "sha256=" + digest.rstrip(b"=").decode()


@pytest.fixture
def installed_distribution(tmp_path: Path) -> metadata.Distribution:
    """An installed distribution ``fakepkg`` 1.0 in a temporary site dir."""
    return _write_distribution(tmp_path / "site", FAKE_FILES | INSTALLER_FILES)


@pytest.fixture
def native(mocker):
    """A stand-in for ``wool_docker._native`` with a base image present."""
    fake = types.SimpleNamespace(
        inspect_image=AsyncMock(return_value={"id": "sha256:base", "labels": {}}),
        build_image=AsyncMock(return_value="sha256:built"),
    )
    mocker.patch.dict(sys.modules, {"wool_docker._native": fake})
    mocker.patch.object(wool_docker, "_native", fake, create=True)
    return fake


@pytest.fixture
def fake_wheelhouse(mocker):
    """Replace `prepare_wheelhouse` with one writing two small wheels."""

    def prepare(directory, **kwargs):
        wheels = []
        for name in ("wool-0.15.7-py3-none-any.whl", "wool_docker-9.9-py3-none-any.whl"):
            wheel = Path(directory) / name
            wheel.write_bytes(name.encode())
            wheels.append(wheel)
        return wheels

    return mocker.patch.object(image_module, "prepare_wheelhouse", side_effect=prepare)


def test_image_labels_with_port():
    """Test the labels of a worker image.

    Given:
        A Python version, a wool-docker version and a port
    When:
        `image_labels` is called
    Then:
        It should name wool's protocol version, the Python, wool and
        wool-docker versions and the port
    """
    # Act
    labels = image_labels(python="3.11", wool_docker_version="0.1.0", port=6000)

    # Assert
    assert labels == {
        "wool.version": wool.protocol.__version__,
        "wool.docker.python": "3.11",
        "wool.docker.wool": metadata.version("wool"),
        "wool.docker.version": "0.1.0",
        "wool.port": "6000",
    }


def test_build_context_with_wheelhouse(tmp_path):
    """Test the build context's contents.

    Given:
        A wheelhouse with two wheels and a stray file
    When:
        `build_context` is called
    Then:
        It should return an uncompressed tar of the Dockerfile and the
        wheels under ``wheels/``
    """
    # Arrange
    (tmp_path / "b-1.0-py3-none-any.whl").write_bytes(b"bee")
    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(b"ay")
    (tmp_path / "notes.txt").write_text("not a wheel")

    # Act
    context = build_context(tmp_path, "FROM scratch\n")

    # Assert
    with tarfile.open(fileobj=io.BytesIO(context), mode="r:") as archive:
        files = {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile()
        }
        directories = [member.name for member in archive.getmembers() if member.isdir()]
    assert files == {
        "Dockerfile": b"FROM scratch\n",
        "wheels/a-1.0-py3-none-any.whl": b"ay",
        "wheels/b-1.0-py3-none-any.whl": b"bee",
    }
    assert directories == ["wheels"]


def test_repack_wheel_with_installed_distribution(tmp_path, installed_distribution):
    """Test repacking an installed distribution.

    Given:
        An installed distribution with bytecode, installer files and a
        console script outside its install location
    When:
        `repack_wheel` is called
    Then:
        It should write a wheel named after its WHEEL tag holding exactly
        its package and ``.dist-info`` files, RECORD last
    """
    # Arrange
    out = tmp_path / "out"
    out.mkdir()

    # Act
    wheel = repack_wheel(out, distribution=installed_distribution)

    # Assert
    assert wheel == out / "fakepkg-1.0-cp311-abi3-linux_x86_64.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        contents = {name: archive.read(name) for name in names}
    assert set(names) == set(FAKE_FILES) | {"fakepkg-1.0.dist-info/RECORD"}
    assert names[-1] == "fakepkg-1.0.dist-info/RECORD"
    assert all(contents[name] == data for name, data in FAKE_FILES.items())


def test_repack_wheel_with_record(tmp_path, installed_distribution):
    """Test the repacked wheel's RECORD.

    Given:
        An installed distribution whose RECORD hashes are stale
    When:
        `repack_wheel` is called
    Then:
        It should write a RECORD with each file's urlsafe sha256 without
        padding and size, and an empty entry for itself
    """
    # Arrange
    out = tmp_path / "out"
    out.mkdir()

    # Act
    wheel = repack_wheel(out, distribution=installed_distribution)

    # Assert
    with zipfile.ZipFile(wheel) as archive:
        record = archive.read("fakepkg-1.0.dist-info/RECORD").decode()
        rows = list(csv.reader(io.StringIO(record)))
        expected = [
            [name, _sha256(archive.read(name)), str(len(archive.read(name)))]
            for name in archive.namelist()
            if not name.endswith("/RECORD")
        ]
    assert rows == expected + [["fakepkg-1.0.dist-info/RECORD", "", ""]]
    assert all("=" not in row[1].removeprefix("sha256=") for row in expected)


def test_repack_wheel_with_several_tags(tmp_path):
    """Test the wheel name of a distribution with several tags.

    Given:
        An installed distribution whose WHEEL lists ``py2-none-any`` and
        ``py3-none-any``
    When:
        `repack_wheel` is called
    Then:
        It should compress the tags into ``py2.py3-none-any``
    """
    # Arrange
    files = FAKE_FILES | {
        "fakepkg-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nTag: py2-none-any\nTag: py3-none-any\n"
        )
    }
    distribution = _write_distribution(tmp_path / "site", files)

    # Act
    wheel = repack_wheel(tmp_path, distribution=distribution)

    # Assert
    assert wheel.name == "fakepkg-1.0-py2.py3-none-any.whl"


def test_repack_wheel_with_editable_direct_url(tmp_path):
    """Test repacking an editable install.

    Given:
        An installed distribution whose ``direct_url.json`` says it is
        editable
    When:
        `repack_wheel` is called
    Then:
        It should raise `WoolDockerError` saying to install the wheel or
        pass ``--wool-docker-wheel``
    """
    # Arrange
    direct_url = {"url": "file:///src/fakepkg", "dir_info": {"editable": True}}
    files = FAKE_FILES | {
        "fakepkg-1.0.dist-info/direct_url.json": json.dumps(direct_url).encode()
    }
    distribution = _write_distribution(tmp_path / "site", files)

    # Act & assert
    with pytest.raises(WoolDockerError, match="editable") as raised:
        repack_wheel(tmp_path, distribution=distribution)
    assert "pip install dist/wool_docker-*.whl" in str(raised.value)
    assert "--wool-docker-wheel PATH" in str(raised.value)


def test_repack_wheel_with_pth_only(tmp_path):
    """Test repacking an install that only points at a source tree.

    Given:
        An installed distribution whose RECORD lists a ``.pth`` file and
        its ``.dist-info`` but no package files
    When:
        `repack_wheel` is called
    Then:
        It should raise `WoolDockerError`
    """
    # Arrange
    files = {
        name: data
        for name, data in FAKE_FILES.items()
        if name.startswith("fakepkg-1.0.dist-info/")
    } | {"fakepkg.pth": b"/src/fakepkg/python\n"}
    distribution = _write_distribution(tmp_path / "site", files)

    # Act & assert
    with pytest.raises(WoolDockerError, match="--wool-docker-wheel"):
        repack_wheel(tmp_path, distribution=distribution)


def test_repack_wheel_with_missing_file(tmp_path, installed_distribution):
    """Test repacking a distribution whose files are not all there.

    Given:
        An installed distribution with a file listed in RECORD deleted
    When:
        `repack_wheel` is called
    Then:
        It should raise `WoolDockerError` naming the missing file
    """
    # Arrange
    installed_distribution.locate_file("fakepkg/_native.abi3.so").unlink()

    # Act & assert
    with pytest.raises(WoolDockerError, match="fakepkg/_native.abi3.so"):
        repack_wheel(tmp_path, distribution=installed_distribution)


def test_repack_wheel_without_installed_distribution(tmp_path, mocker):
    """Test repacking when wool-docker is not installed.

    Given:
        No installed ``wool-docker`` distribution
    When:
        `repack_wheel` is called without a distribution
    Then:
        It should raise `WoolDockerError` saying to install the wheel
    """
    # Arrange
    mocker.patch.object(
        image_module.metadata,
        "distribution",
        side_effect=metadata.PackageNotFoundError("wool-docker"),
    )

    # Act & assert
    with pytest.raises(WoolDockerError, match="not installed"):
        repack_wheel(tmp_path)


def test_prepare_wheelhouse_with_requirements_and_packages(tmp_path, mocker):
    """Test the pip command that fills the wheelhouse.

    Given:
        A wool-docker wheel, a requirements file, a project directory and
        a requirement string
    When:
        `prepare_wheelhouse` is called
    Then:
        It should run one ``pip wheel`` with this interpreter for wool's
        installed version and all of them, and return the wheels it saved
    """
    # Arrange
    wheel = tmp_path / "wool_docker-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    project = tmp_path / "project"
    project.mkdir()
    house = tmp_path / "house"

    def pip(command, **kwargs):
        (house / "wool-0.15.7-py3-none-any.whl").write_bytes(b"")
        (house / "grpcio-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
        return mocker.Mock(returncode=0, stdout="Saved\n", stderr="")

    run = mocker.patch.object(image_module.subprocess, "run", side_effect=pip)

    # Act
    wheels = prepare_wheelhouse(
        house,
        requirements=["requirements.txt"],
        packages=[project, "numpy>=2"],
        wool_docker_wheel=wheel,
    )

    # Assert
    command = run.call_args.args[0]
    assert command[:6] == [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--wheel-dir",
        str(house),
    ]
    assert f"wool=={metadata.version('wool')}" in command
    assert str(wheel.resolve()) in command
    assert command[-4:] == [
        "--requirement",
        "requirements.txt",
        str(project.resolve()),
        "numpy>=2",
    ]
    assert wheels == [
        house / "grpcio-1.0-cp311-cp311-linux_x86_64.whl",
        house / "wool-0.15.7-py3-none-any.whl",
    ]


def test_prepare_wheelhouse_without_wool_docker_wheel(tmp_path, mocker):
    """Test the wheelhouse of this very build.

    Given:
        No wool-docker wheel
    When:
        `prepare_wheelhouse` is called
    Then:
        It should repack the installed wool-docker and pass that wheel to
        pip
    """

    # Arrange
    def repack(directory):
        wheel = Path(directory) / "wool_docker-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"wheel")
        return wheel

    repack_wheel = mocker.patch.object(image_module, "repack_wheel", side_effect=repack)
    seen = []

    def pip(command, **kwargs):
        seen.extend(arg for arg in command if arg.endswith(".whl"))
        return mocker.Mock(returncode=0, stdout="", stderr="")

    mocker.patch.object(image_module.subprocess, "run", side_effect=pip)

    # Act
    prepare_wheelhouse(tmp_path / "house")

    # Assert
    repack_wheel.assert_called_once()
    assert [Path(arg).name for arg in seen] == ["wool_docker-0.1.0-py3-none-any.whl"]


def test_prepare_wheelhouse_with_missing_wheel(tmp_path):
    """Test a wool-docker wheel that does not exist.

    Given:
        A path to a wool-docker wheel that is not there
    When:
        `prepare_wheelhouse` is called
    Then:
        It should raise `WoolDockerError` naming the path
    """
    # Act & assert
    with pytest.raises(WoolDockerError, match="missing.whl"):
        prepare_wheelhouse(tmp_path, wool_docker_wheel=tmp_path / "missing.whl")


def test_prepare_wheelhouse_with_pip_failure(tmp_path, mocker):
    """Test pip failing to fetch a package.

    Given:
        pip exits with an error for an unknown package
    When:
        `prepare_wheelhouse` is called
    Then:
        It should raise `ImageBuildError` with pip's error in the message
        and its output as the log
    """
    # Arrange
    wheel = tmp_path / "wool_docker-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    stderr = (
        "ERROR: Could not find a version that satisfies the requirement nope\n"
        "ERROR: No matching distribution found for nope\n"
    )
    mocker.patch.object(
        image_module.subprocess,
        "run",
        return_value=mocker.Mock(
            returncode=1, stdout="Collecting nope\n", stderr=stderr
        ),
    )

    # Act & assert
    with pytest.raises(ImageBuildError, match="No matching distribution") as raised:
        prepare_wheelhouse(tmp_path, packages=["nope"], wool_docker_wheel=wheel)
    assert "Collecting nope" in raised.value.log
    assert "Could not find a version" in raised.value.log


@pytest.mark.asyncio
async def test_build_image_with_base(native, fake_wheelhouse):
    """Test building an image from a given base.

    Given:
        A base image on the daemon and a wheelhouse with a wool-docker
        wheel
    When:
        `build_image` is called
    Then:
        It should inspect the base, build a context whose Dockerfile uses
        it and carries the image labels, and return the built image's id
    """
    # Act
    image_id = await build_image(
        "wool-worker:test",
        base="wool-docker-base:bookworm",
        packages=["numpy"],
        host="unix:///var/run/docker.sock",
        port=6000,
    )

    # Assert
    assert image_id == "sha256:built"
    native.inspect_image.assert_awaited_once_with(
        "wool-docker-base:bookworm", "unix:///var/run/docker.sock"
    )
    assert fake_wheelhouse.call_args.kwargs["packages"] == ("numpy",)
    context, tag, host = native.build_image.await_args.args
    assert (tag, host) == ("wool-worker:test", "unix:///var/run/docker.sock")
    text = _read_dockerfile(context)
    assert "FROM wool-docker-base:bookworm AS build" in text
    assert '"wool.docker.version"="9.9"' in text
    assert '"wool.port"="6000"' in text
    assert f'"wool.docker.python"="{PYTHON}"' in text
    assert "/wheels/wool_docker-9.9-py3-none-any.whl" in text


@pytest.mark.asyncio
async def test_build_image_without_base(native, fake_wheelhouse):
    """Test the default base image.

    Given:
        No base image
    When:
        `build_image` is called
    Then:
        It should use ``python:<major>.<minor>-slim`` of this interpreter
    """
    # Act
    await build_image("wool-worker:test")

    # Assert
    native.inspect_image.assert_awaited_once_with(f"python:{PYTHON}-slim", None)


@pytest.mark.asyncio
async def test_build_image_with_base_of_other_python(native, fake_wheelhouse):
    """Test a base labelled with another Python version.

    Given:
        A base image labelled ``wool.docker.python`` with another
        version than this interpreter's
    When:
        `build_image` is called
    Then:
        It should raise `ImageMismatchError` before fetching any wheel
    """
    # Arrange
    native.inspect_image.return_value = {
        "id": "sha256:base",
        "labels": {"wool.docker.python": "2.7"},
    }

    # Act & assert
    with pytest.raises(ImageMismatchError, match="Python 2.7") as raised:
        await build_image("wool-worker:test", base="old:base")
    assert raised.value.image == "old:base"
    fake_wheelhouse.assert_not_called()
    native.build_image.assert_not_awaited()
