"""Worker images built without network access inside the build.

Provides `build_image`, which builds a wool worker image on the Docker
Engine, and the steps it is made of: `prepare_wheelhouse` fetches every
wheel the image needs on the host, `repack_wheel` turns the installed
wool-docker back into a wheel, `dockerfile` writes the multi-stage
Dockerfile and `build_context` packs both into the tar the Engine builds
from. `dockerfile` and the labels are pure, in `wool_docker._dockerfile`;
this module holds what does I/O: pip, the installed distribution, files
and the Engine.

Nothing is downloaded inside the build: pip runs on the host, where an
index (or a local ``--find-links`` directory configured through pip's own
``PIP_*`` environment variables) is reachable, and the image installs
from the copied wheels with ``--no-index``. A build therefore works on a
daemon with no registry and no network. The base image must already be on
the daemon; nothing is pulled.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import logging
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from pathlib import PurePosixPath
from typing import Final

from wool_docker import _native
from wool_docker._dockerfile import BASE_PYTHON_LABEL
from wool_docker._dockerfile import check_port
from wool_docker._dockerfile import dockerfile
from wool_docker._dockerfile import worker_labels
from wool_docker.exceptions import ImageBuildError
from wool_docker.exceptions import ImageMismatchError
from wool_docker.exceptions import WoolDockerError

_log = logging.getLogger(__name__)

_DISTRIBUTION: Final[str] = "wool-docker"
"""The distribution name this package is installed under."""

_INSTALLER_FILES: Final[frozenset[str]] = frozenset(
    {"RECORD", "RECORD.jws", "RECORD.p7s", "INSTALLER", "REQUESTED", "direct_url.json"}
)
"""Files an installer adds to a ``.dist-info`` (or that a repacked wheel
must regenerate); they are left out of a repacked wheel."""

_FIX_EDITABLE: Final[str] = (
    "install the wool-docker wheel (pip install dist/wool_docker-*.whl) or pass "
    "--wool-docker-wheel PATH"
)
"""The way out of an editable or missing wool-docker install."""


# public
def prepare_wheelhouse(
    directory: str | os.PathLike[str],
    *,
    requirements: Iterable[str | os.PathLike[str]] = (),
    packages: Iterable[str | os.PathLike[str]] = (),
    wool_docker_wheel: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Fill a directory with every wheel a worker image installs.

    Runs ``pip wheel`` once, with the current interpreter, for
    ``wool==<installed version>``, the wool-docker wheel of this very
    build, each requirements file and each package, so pip resolves them
    together and the wheelhouse holds one consistent set. Wheels built on
    this host fit the image because `build_image` requires the image's
    Python minor version to equal this interpreter's. pip's usual
    configuration (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``pip.conf``)
    applies, which is how an air-gapped host points it at a local mirror.

    This blocks for as long as pip takes; call it through
    `asyncio.to_thread` from a coroutine.

    :param directory:
        Where to put the wheels; created if missing.
    :param requirements:
        Requirements files, each passed to pip as ``--requirement``.
    :param packages:
        Further packages: a path to a wheel, a path to a project directory
        (built into a wheel), or a requirement string such as
        ``"numpy>=2"``.
    :param wool_docker_wheel:
        The wool-docker wheel to put in the image. ``None`` (default)
        repacks the installed distribution with `repack_wheel`.
    :returns:
        The wheels in ``directory``, sorted by name.
    :raises WoolDockerError:
        If ``wool_docker_wheel`` does not exist, or it is ``None`` and
        wool-docker is not installed from a wheel.
    :raises ImageBuildError:
        If pip cannot fetch or build the wheels; ``log`` holds the tail of
        its output.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wool-docker-repack-") as staging:
        if wool_docker_wheel is None:
            wheel = repack_wheel(staging)
        else:
            wheel = Path(wool_docker_wheel)
            if not wheel.is_file() or wheel.suffix != ".whl":
                raise WoolDockerError(f"wool-docker wheel '{wheel}' is not a wheel file")
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--wheel-dir",
            str(directory),
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            f"wool=={metadata.version('wool')}",
            str(wheel.resolve()),
        ]
        for requirement in requirements:
            command += ["--requirement", str(requirement)]
        command += [_package_argument(package) for package in packages]
        _log.info("fetching wheels for the image with pip")
        _log.debug("running %s", shlex.join(command))
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = "\n".join(part for part in (result.stdout, result.stderr) if part)
    _log.debug("pip output:\n%s", output)
    if result.returncode != 0:
        errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
        last = output.strip().splitlines()[-1:] or ["pip printed nothing"]
        reason = (errors or last)[-1].removeprefix("ERROR:").strip()
        raise ImageBuildError(
            f"pip could not fetch the wheels for the image (exit status "
            f"{result.returncode}): {reason}",
            log=_tail(output),
        )
    return sorted(directory.glob("*.whl"))


# public
def repack_wheel(
    directory: str | os.PathLike[str],
    *,
    distribution: metadata.Distribution | None = None,
) -> Path:
    """Turn an installed distribution back into a wheel.

    Reads the distribution's ``RECORD`` and zips every file it lists
    under the install location, ``.dist-info`` included, into a wheel
    named after the tag in its ``WHEEL`` file. Bytecode (``__pycache__``,
    ``.pyc``), files installed outside the install location (console
    scripts, which the installer regenerates from ``entry_points.txt``)
    and the installer's own files (``INSTALLER``, ``REQUESTED``,
    ``direct_url.json``) are left out, and ``RECORD`` is written anew with
    each file's sha256 and size.

    An editable install cannot be repacked: its files live in a source
    tree and its compiled extension may not be where ``RECORD`` says.

    :param directory:
        Where to write the wheel; it must exist.
    :param distribution:
        The distribution to repack. ``None`` (default) is the installed
        wool-docker, so the image gets this very build.
    :returns:
        The path of the wheel written.
    :raises WoolDockerError:
        If the distribution is not installed, is an editable install, or
        lists files that are missing.
    """
    if distribution is None:
        try:
            distribution = metadata.distribution(_DISTRIBUTION)
        except metadata.PackageNotFoundError:
            raise WoolDockerError(
                f"wool-docker is not installed as a distribution; {_FIX_EDITABLE}"
            ) from None
    name = distribution.metadata["Name"]
    if _is_editable(distribution):
        raise WoolDockerError(
            f"{name} is an editable install, which cannot go into an image; "
            f"{_FIX_EDITABLE}"
        )
    files = distribution.files
    if files is None:
        raise WoolDockerError(f"{name} has no RECORD to repack; {_FIX_EDITABLE}")
    dist_info = _dist_info_directory(distribution, files)
    entries: list[tuple[str, Path]] = []
    for file in files:
        path = PurePosixPath(file.as_posix())
        if path.parts[0] == ".." or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if path.parts[0] == dist_info and path.name in _INSTALLER_FILES:
            continue
        located = Path(file.locate())
        if not located.is_file():
            raise WoolDockerError(
                f"{name} is installed incompletely ('{path}' is missing), as an "
                f"editable install is; {_FIX_EDITABLE}"
            )
        entries.append((str(path), located))
    if not any(_is_payload(arcname, dist_info) for arcname, _ in entries):
        raise WoolDockerError(
            f"{name} installs no package files, as an editable install does; "
            f"{_FIX_EDITABLE}"
        )
    tag = _wheel_tag(distribution.read_text("WHEEL") or "")
    if tag is None:
        raise WoolDockerError(f"{name}'s WHEEL file names no tag; {_FIX_EDITABLE}")
    # Wheel readers want the .dist-info last, and RECORD last of all.
    entries.sort(key=lambda entry: (entry[0].startswith(f"{dist_info}/"), entry[0]))
    wheel = Path(directory) / f"{dist_info.removesuffix('.dist-info')}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, located in entries:
            data = located.read_bytes()
            info = zipfile.ZipInfo.from_file(located, arcname)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            writer.writerow((arcname, _record_hash(data), len(data)))
        writer.writerow((f"{dist_info}/RECORD", "", ""))
        archive.writestr(f"{dist_info}/RECORD", record.getvalue())
    _log.info("repacked installed %s into %s", name, wheel.name)
    return wheel


# public
def image_labels(*, python: str, wool_docker_version: str, port: int) -> dict[str, str]:
    """The labels `build_image` puts on a worker image.

    Containers inherit their image's labels, so discovery and the worker
    find these on every container made from the image. They are those of
    `wool_docker._dockerfile.worker_labels`, with the wool release installed
    here (the one the wheelhouse pins).

    :param python:
        The image's Python minor version, e.g. ``"3.11"``.
    :param wool_docker_version:
        The version of the wool-docker wheel installed in the image.
    :param port:
        The worker's port inside the container.
    :returns:
        The labels, keys to values.
    """
    return worker_labels(
        python=python,
        wool_version=metadata.version("wool"),
        wool_docker_version=wool_docker_version,
        port=port,
    )


# public
def build_context(wheelhouse: str | os.PathLike[str], dockerfile_text: str) -> bytes:
    """Pack a Dockerfile and a wheelhouse into a build context.

    The context is an uncompressed tar, built in memory, holding
    ``Dockerfile`` and ``wheels/<name>.whl`` for every wheel directly in
    ``wheelhouse``. Entries are sorted and owned by root so equal inputs
    give equal contexts.

    :param wheelhouse:
        The directory of wheels, e.g. filled by `prepare_wheelhouse`.
    :param dockerfile_text:
        The Dockerfile, e.g. from `dockerfile`.
    :returns:
        The tar archive's bytes.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, "Dockerfile", dockerfile_text.encode())
        _add_directory(archive, "wheels")
        for wheel in sorted(Path(wheelhouse).glob("*.whl")):
            _add_bytes(archive, f"wheels/{wheel.name}", wheel.read_bytes())
    return buffer.getvalue()


# public
async def build_image(
    tag: str,
    *,
    base: str | None = None,
    requirements: Iterable[str | os.PathLike[str]] = (),
    packages: Iterable[str | os.PathLike[str]] = (),
    wool_docker_wheel: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int = _native.DEFAULT_PORT,
    labels: Mapping[str, str] | None = None,
    push: bool = False,
) -> str:
    """Build a wool worker image on the Docker Engine.

    Checks that the base image is on the daemon, fetches every wheel on
    this host with `prepare_wheelhouse`, writes the Dockerfile with
    `dockerfile` and the labels of `image_labels`, and has the Engine
    build and tag the image. The build itself needs no network. The
    image's Python minor version must equal this interpreter's; the
    build fails with a message saying so otherwise.

    .. code-block:: python

        image_id = await build_image("wool-worker:latest", packages=["./myapp"])

    :param tag:
        The tag to give the image, e.g. ``"wool-worker:latest"``.
    :param base:
        The base image, which must already be on the daemon. Defaults to
        ``python:<major>.<minor>-slim`` of this interpreter.
    :param requirements:
        Requirements files whose packages the image should have.
    :param packages:
        Further packages: paths to wheels or project directories, or
        requirement strings.
    :param wool_docker_wheel:
        The wool-docker wheel to install. ``None`` (default) repacks the
        installed wool-docker.
    :param host:
        The Docker Engine address; ``None`` uses ``DOCKER_HOST`` or the
        local socket.
    :param port:
        The port the worker serves on inside the container.
    :param labels:
        Extra image labels (e.g. a cache key); they cannot override the
        labels of `image_labels`.
    :param push:
        Push the image to the registry its tag names once built
        (``registry.example:5000/team/worker:1``), with the registry
        credentials the docker CLI would use.
    :returns:
        The new image's id.
    :raises ValueError:
        If ``port`` is out of range.
    :raises ImageNotFoundError:
        If the base image is not on the daemon.
    :raises ImageMismatchError:
        If the base image is labelled with another Python version.
    :raises ImageBuildError:
        If fetching the wheels or the build fails.
    :raises ImagePullError:
        If the push fails; `RegistryAuthError` when the registry refuses
        the credentials, `RegistryUnreachableError` when the Engine cannot
        reach it.
    :raises WoolDockerError:
        If wool-docker cannot be repacked (see `repack_wheel`) or the
        Engine cannot be reached.
    """
    from wool_docker import _native

    check_port(port)
    python = "{}.{}".format(*sys.version_info[:2])
    if base is None:
        base = f"python:{python}-slim"
    inspected = await _native.inspect_image(base, host)
    base_python = (inspected.get("labels") or {}).get(BASE_PYTHON_LABEL)
    if base_python is not None and base_python != python:
        raise ImageMismatchError(
            f"base image '{base}' has Python {base_python} but this host runs Python "
            f"{python}; pass --base with a Python {python} image",
            image=base,
        )
    with tempfile.TemporaryDirectory(prefix="wool-docker-wheels-") as wheelhouse:
        wheels = await asyncio.to_thread(
            prepare_wheelhouse,
            wheelhouse,
            requirements=tuple(requirements),
            packages=tuple(packages),
            wool_docker_wheel=wool_docker_wheel,
        )
        text = dockerfile(
            base=base,
            python=python,
            labels={
                **(labels or {}),
                **image_labels(
                    python=python,
                    wool_docker_version=_wool_docker_version(wheels),
                    port=port,
                ),
            },
            install=[f"/wheels/{wheel.name}" for wheel in wheels],
            port=port,
        )
        context = await asyncio.to_thread(build_context, wheelhouse, text)
    _log.info("building %s from %s (%d wheels)", tag, base, len(wheels))
    image_id = await _native.build_image(context, tag, host)
    _log.info("built %s: %s", tag, image_id)
    if push:
        _log.info("pushing %s", tag)
        await _native.push_image(tag, host)
        _log.info("pushed %s", tag)
    return image_id


def _package_argument(package: str | os.PathLike[str]) -> str:
    """Turn a package given by the user into a ``pip wheel`` argument.

    An existing path (wheel or project directory) becomes absolute so pip
    cannot read it as a project name; anything else is a requirement
    string and passes through.

    :param package:
        A path or a requirement string.
    :returns:
        The argument for pip.
    """
    path = Path(package)
    if path.exists():
        return str(path.resolve())
    return os.fspath(package)


def _is_editable(distribution: metadata.Distribution) -> bool:
    """Whether a distribution was installed in editable mode.

    :param distribution:
        The installed distribution.
    :returns:
        ``True`` if its ``direct_url.json`` says ``"editable": true``.
    """
    text = distribution.read_text("direct_url.json")
    if not text:
        return False
    try:
        direct_url = json.loads(text)
    except ValueError:
        return False
    return bool(direct_url.get("dir_info", {}).get("editable", False))


def _is_payload(arcname: str, dist_info: str) -> bool:
    """Whether a wheel entry is code or data rather than install plumbing.

    An editable install's RECORD lists only its ``.dist-info``, a ``.pth``
    file pointing at the source tree and perhaps an ``__editable__`` import
    hook; none of those count.

    :param arcname:
        The entry's path in the wheel.
    :param dist_info:
        The name of the ``.dist-info`` directory.
    :returns:
        ``True`` for anything else.
    """
    path = PurePosixPath(arcname)
    return not (
        path.parts[0] == dist_info
        or (len(path.parts) == 1 and path.suffix == ".pth")
        or path.name.startswith("__editable__")
    )


def _dist_info_directory(
    distribution: metadata.Distribution, files: Sequence[metadata.PackagePath]
) -> str:
    """The name of a distribution's ``.dist-info`` directory.

    :param distribution:
        The installed distribution.
    :param files:
        Its files, from ``RECORD``.
    :returns:
        The directory name, e.g. ``"wool_docker-0.1.0.dist-info"``.
    :raises WoolDockerError:
        If ``RECORD`` lists no ``METADATA`` in a ``.dist-info``.
    """
    for file in files:
        parts = PurePosixPath(file.as_posix()).parts
        if (
            len(parts) == 2
            and parts[0].endswith(".dist-info")
            and parts[1] == "METADATA"
        ):
            return parts[0]
    raise WoolDockerError(
        f"{distribution.metadata['Name']} has no .dist-info in its RECORD; "
        f"{_FIX_EDITABLE}"
    )


def _wheel_tag(wheel_file: str) -> str | None:
    """The compressed tag for a wheel's file name, from its ``WHEEL`` file.

    Several ``Tag:`` lines are compressed per component, as in
    ``py2.py3-none-any``.

    :param wheel_file:
        The text of the ``WHEEL`` file.
    :returns:
        The tag, or ``None`` if the file names none.
    """
    tags = [
        line.partition(":")[2].strip().split("-")
        for line in wheel_file.splitlines()
        if line.startswith("Tag:")
    ]
    tags = [tag for tag in tags if len(tag) == 3]
    if not tags:
        return None
    components = [list(dict.fromkeys(tag[index] for tag in tags)) for index in range(3)]
    return "-".join(".".join(component) for component in components)


def _record_hash(data: bytes) -> str:
    """A ``RECORD`` hash field: sha256, urlsafe base64 without padding.

    :param data:
        The file's content.
    :returns:
        The field, e.g. ``"sha256=47DEQpj8..."``.
    """
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _wool_docker_version(wheels: Iterable[Path]) -> str:
    """The version of the wool-docker wheel among a wheelhouse's wheels.

    The image's label must name the wool-docker that is in the image,
    which is the installed one unless another wheel was passed.

    :param wheels:
        The wheels of the wheelhouse.
    :returns:
        The version from the wheel's file name, or the installed
        version if no wool-docker wheel is among them.
    """
    for wheel in wheels:
        name, _, rest = wheel.name.partition("-")
        if name.lower() == "wool_docker":
            return rest.partition("-")[0]
    return metadata.version(_DISTRIBUTION)


def _tail(text: str, lines: int = 30) -> str:
    """The last lines of some output.

    :param text:
        The output.
    :param lines:
        How many lines to keep.
    :returns:
        At most ``lines`` final lines of ``text``.
    """
    return "\n".join(text.splitlines()[-lines:])


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file owned by root to a tar archive.

    :param archive:
        The archive, open for writing.
    :param name:
        The member's name.
    :param data:
        Its content.
    """
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _add_directory(archive: tarfile.TarFile, name: str) -> None:
    """Add a directory owned by root to a tar archive.

    :param archive:
        The archive, open for writing.
    :param name:
        The directory's name.
    """
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)
