"""The pure half of worker images: the Dockerfile text and the labels.

Nothing here reads files, runs processes or talks to the Engine: every value
comes in as an argument, so these are checked by plain unit tests.
`wool_docker.image` does the I/O (the wheelhouse, the build context, the
build) and re-exports `dockerfile`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Final

import wool.protocol

from wool_docker import _native

_VENV: Final[str] = "/opt/wool"
"""Where the image's virtual environment lives, in both build stages."""

_USER: Final[str] = "65532:65532"
"""The unprivileged ``uid:gid`` the image runs as (``USER``), the same as
`DockerWorker`'s default ``user``. No passwd entry is needed."""

_HOME: Final[str] = "/home/wool"
"""The worker user's home; a tmpfs over it under a read-only root."""

_DEFAULT_PATH: Final[str] = (
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
"""The ``PATH`` Docker gives a container whose image sets none. An image
made by ``docker import`` (``scripts/base-image.sh``) has no ``ENV PATH``,
so ``$PATH`` would expand to nothing and drop the system directories from
the worker's ``PATH``; this is the fallback."""

BASE_PYTHON_LABEL: Final[str] = "wool.docker.python"
"""Label ``scripts/base-image.sh`` puts on the base images it makes; when
present it lets a Python mismatch fail before any wheel is fetched."""


def worker_labels(
    *, python: str, wool_version: str, wool_docker_version: str, port: int
) -> dict[str, str]:
    """The labels of a worker image, from the versions that go into it.

    Containers inherit their image's labels, so discovery and the worker
    find these on every container made from the image.

    ``wool.version``
        wool's protocol version (`wool.protocol.__version__`); discovery
        reports it as each worker's version, which wool's proxies check
        before admitting a worker.
    ``wool.port``
        The port the worker serves on inside the container; discovery
        advertises it for containers that set no port of their own.
    ``wool.docker.python``
        The image's Python minor version, e.g. ``"3.11"``.
    ``wool.docker.wool``
        The wool release installed in the image.
    ``wool.docker.version``
        The wool-docker release installed in the image.

    :param python:
        The image's Python minor version, e.g. ``"3.11"``.
    :param wool_version:
        The wool release installed in the image.
    :param wool_docker_version:
        The version of the wool-docker wheel installed in the image.
    :param port:
        The worker's port inside the container.
    :returns:
        The labels, keys to values.
    """
    return {
        "wool.version": wool.protocol.__version__,
        "wool.port": str(port),
        "wool.docker.python": python,
        "wool.docker.wool": wool_version,
        "wool.docker.version": wool_docker_version,
    }


_SETID: Final[str] = "-type f -perm /6000"
"""``find`` tests of a file with its setuid or setgid bit set."""


# public
def dockerfile(
    *,
    base: str,
    python: str,
    labels: Mapping[str, str],
    install: Sequence[str],
    port: int,
) -> str:
    """Write the Dockerfile of a worker image.

    Two stages, both ``FROM base``, using only instructions the classic
    builder of Docker 20.10 understands. The ``build`` stage copies the
    ``wheels`` directory of the context, refuses a base whose Python
    minor version is not ``python`` (cloudpickle ships functions by
    value, so host and worker must match), creates a virtual environment
    in ``/opt/wool`` and installs into it with ``--no-index`` from the
    wheels, then imports wool and the native module to prove the
    environment loads. The final stage copies only the environment, puts
    it first on ``PATH``, clears every setuid and setgid bit (and fails if
    one is left), and runs ``python3 -m wool_docker._entrypoint`` with a
    matching ``HEALTHCHECK``.

    :param base:
        The base image; it must provide ``python3`` with the ``venv``
        module.
    :param python:
        The Python minor version the base must have, e.g. ``"3.11"``.
    :param labels:
        Labels to put on the image. Values are quoted, ``$`` included, so
        they are taken literally.
    :param install:
        Arguments to ``pip install`` in the image, e.g. paths of wheels
        under ``/wheels``; each is shell-quoted.
    :param port:
        The port the worker serves on; set as ``WOOL_PORT`` and exposed.
    :returns:
        The Dockerfile text.
    :raises ValueError:
        If ``base`` is empty or contains whitespace, ``python`` is not
        ``MAJOR.MINOR``, ``port`` is out of range, ``install`` is empty,
        or a label contains a line break.
    """
    if not base or any(character.isspace() for character in base):
        raise ValueError(f"base image {base!r} must be a non-empty name without spaces")
    want = python_version(python)
    check_port(port)
    if not install:
        raise ValueError("install must name at least one package")
    # The message formats as "{0}.{1}" with the base's version at build time.
    message = (
        f"wool-docker: base image {_brace(base)} has Python {{0}}.{{1}} but this "
        f"image is built for Python {python}, the version of the host that builds "
        f"it, and cloudpickle needs both to match; pass --base with a Python "
        f"{python} image (scripts/base-image.sh makes one) or build from a Python "
        f"{{0}}.{{1}} host"
    )
    check = (
        f"import sys; v = sys.version_info[:2]; "
        f"sys.exit(0 if v == {want!r} else {message!r}.format(*v))"
    )
    label_words = [f"{_quote(key)}={_quote(value)}" for key, value in labels.items()]
    lines = [
        "# Generated by wool-docker image build.",
        f"FROM {base} AS build",
        "COPY wheels /wheels",
        f"RUN {json.dumps(['python3', '-c', check])}",
        f"RUN python3 -m venv {_VENV} \\",
        f"    && {_VENV}/bin/pip install --no-index --find-links /wheels \\",
        "        --disable-pip-version-check --no-cache-dir \\",
        *(f"        {shlex.quote(item)} \\" for item in install),
        f'    && {_VENV}/bin/python -c "import wool, wool_docker._native"',
        "",
        f"FROM {base}",
        f"COPY --from=build {_VENV} {_VENV}",
        f"ENV PATH={_VENV}/bin:${{PATH:-{_DEFAULT_PATH}}} \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PYTHONDONTWRITEBYTECODE=1 \\",
        f"    HOME={_HOME} \\",
        f"    WOOL_PORT={port}",
        # The home exists for `docker run` without a tmpfs over it; nothing else
        # of the image is the worker's to write. No file keeps a setuid or
        # setgid bit (CIS Docker Benchmark 4.8): a routine that could regain
        # privileges through one (without no-new-privileges) finds none, and
        # the build fails if one is left.
        f"RUN mkdir -p {_HOME} && chown {_USER} {_HOME} && chmod 0700 {_HOME} \\",
        f"    && find / -xdev {_SETID} -exec chmod ug-s {{}} + \\",
        f'    && test -z "$(find / -xdev {_SETID})"',
        f"USER {_USER}",
        f"EXPOSE {port}",
    ]
    if label_words:
        lines.append("LABEL " + " \\\n      ".join(label_words))
    lines += [
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\",
        '    CMD ["python3", "-m", "wool_docker._entrypoint", "--health"]',
        "STOPSIGNAL SIGTERM",
        'ENTRYPOINT ["python3", "-m", "wool_docker._entrypoint"]',
        "",
    ]
    return "\n".join(lines)


def python_version(python: str) -> tuple[int, int]:
    """Parse a ``MAJOR.MINOR`` Python version.

    :param python:
        The version, e.g. ``"3.11"``.
    :returns:
        The version as a tuple, e.g. ``(3, 11)``.
    :raises ValueError:
        If ``python`` is not two dot-separated integers.
    """
    major, dot, minor = python.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise ValueError(f"python {python!r} must be MAJOR.MINOR, e.g. '3.11'")
    return int(major), int(minor)


def check_port(port: int) -> None:
    """Reject a port outside 1-65535 (the core's one port rule).

    :param port:
        The port.
    :raises ValueError:
        If the port is out of range.
    """
    _native.check_port(port)


def _quote(value: str) -> str:
    """Quote a word for a Dockerfile ``LABEL``.

    Inside double quotes the Dockerfile lexer honours ``\\"``, ``\\\\``
    and ``\\$`` and substitutes ``$VAR``; escaping those three makes the
    value literal. Line breaks cannot be expressed and are rejected.

    :param value:
        The label key or value.
    :returns:
        The quoted word.
    :raises ValueError:
        If ``value`` contains a line break.
    """
    if "\n" in value or "\r" in value:
        raise ValueError(f"label {value!r} must not contain a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _brace(text: str) -> str:
    """Escape braces so `str.format` leaves them alone.

    :param text:
        The text to embed in a format string.
    :returns:
        The text with ``{`` and ``}`` doubled.
    """
    return text.replace("{", "{{").replace("}", "}}")
