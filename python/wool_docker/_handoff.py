"""What the owner hands a worker container over stdin before it serves.

TLS material must reach the worker without touching a label, an environment
variable, an image layer or the host's disk, and the root filesystem is
read-only. So the owner writes it as the first line on the container's stdin
(``WOOL_DOCKER_TLS_STDIN=1``), and the entry point writes it, readable by the
worker's user alone, into the tmpfs that ``WOOL_TLS_CA``/``WOOL_TLS_CERT``/
``WOOL_TLS_KEY`` point into. Lines after it are the owner's stop commands.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

MAX_LINE: Final[int] = 1024 * 1024
"""Longest TLS line accepted (PEM chains are a few KiB)."""

FILES: Final[Mapping[str, str]] = {
    "ca": "WOOL_TLS_CA",
    "cert": "WOOL_TLS_CERT",
    "key": "WOOL_TLS_KEY",
}
"""The line's fields and the variables naming where each is written."""


class HandoffError(Exception):
    """The owner's line was missing or malformed."""


def receive_tls(fd: int, environ: Mapping[str, str]) -> None:
    """Read the TLS line from ``fd`` and write its files.

    :param fd:
        The stdin file descriptor.
    :param environ:
        The environment, naming the file paths.
    :raises HandoffError:
        If stdin ends first, the line is too long or not the expected JSON, or
        a file cannot be written.
    """
    line = read_line(fd)
    if line is None:
        raise HandoffError("stdin closed before the TLS material arrived")
    try:
        fields = json.loads(line)
    except ValueError:
        raise HandoffError("the TLS line is not JSON") from None
    write_tls(fields, environ)


def read_line(fd: int) -> bytes | None:
    """Read one line from ``fd``, without its newline; ``None`` at end of file.

    Reads one byte at a time, so nothing after the line is consumed: the stop
    commands that follow are the control thread's to read.

    :param fd:
        The stdin file descriptor.
    :raises HandoffError:
        If the line is longer than `MAX_LINE`.
    """
    line = bytearray()
    while True:
        byte = os.read(fd, 1)
        if not byte:
            return None
        if byte == b"\n":
            return bytes(line)
        line += byte
        if len(line) > MAX_LINE:
            raise HandoffError(f"the line on stdin is longer than {MAX_LINE} bytes")


def write_tls(fields: object, environ: Mapping[str, str]) -> None:
    """Write TLS material, ``{"ca", "cert", "key"}`` PEM texts, to its files.

    :param fields:
        The material as decoded from JSON.
    :param environ:
        The environment, naming the file paths.
    :raises HandoffError:
        If the material is not exactly those three texts, or a file cannot be
        written.
    """
    if not isinstance(fields, dict) or set(fields) != set(FILES):
        raise HandoffError(f"the TLS material must hold exactly {sorted(FILES)}")
    for name, variable in FILES.items():
        text = fields[name]
        path = environ.get(variable, "").strip()
        if not isinstance(text, str) or not path:
            raise HandoffError(f"no text for {name}, or {variable} is unset")
        try:
            # Created here, never followed or reused: 0400, the worker's user only.
            out = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400
            )
            with os.fdopen(out, "w") as file:
                file.write(text)
        except OSError as e:
            raise HandoffError(f"cannot write {path}: {e}") from None
