"""Parked: a standby container's life before it is claimed.

With ``WOOL_DOCKER_STANDBY=1`` the entry point imports what serving needs,
prints one line, `PARKED_PREFIX` followed by a compact JSON object (``pid``),
and waits for its claim: one JSON line on stdin,
``{"env": {...}, "tls": {"ca", "cert", "key"} or null}``. ``env`` holds the
worker's variables (`CLAIM_VARIABLES`), set as if the container had been
created with them; ``tls`` is the material for the ``WOOL_TLS_*`` paths. From
then on the container is the worker its claim describes, and stdin carries
stop commands as for any worker. End of file, or a stop command, while parked
exits cleanly: the owner is gone, or its standby closed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

from wool_docker import _handoff
from wool_docker import _native
from wool_docker._entrypoint.config import ConfigError
from wool_docker._entrypoint.control import parse_control_line

PARKED_PREFIX: Final[str] = _native.PARKED_PREFIX
"""Start of the line a parked container prints (defined once, in the core)."""

CLAIM_VARIABLES: Final[frozenset[str]] = frozenset(
    {
        "WOOL_DOCKER_WORKER",
        "WOOL_TLS_CA",
        "WOOL_TLS_CERT",
        "WOOL_TLS_KEY",
        "WOOL_TLS_MUTUAL",
    }
)
"""The variables a claim may set: the worker's own (its owner's document and
where its TLS files go), never the container's."""


class Unclaimed(Exception):
    """The owner ended the wait: end of file or a stop command, no claim."""


def park(fd: int) -> dict[str, str]:
    """Get ready to serve, say so, and wait for the claim.

    :param fd:
        The stdin file descriptor.
    :returns:
        The claim's variables, already set in ``os.environ`` and with its TLS
        material written.
    :raises Unclaimed:
        If stdin ends, or a stop command arrives, before a claim.
    :raises ConfigError:
        If the claim is malformed.
    """
    warm()
    print(PARKED_PREFIX + json.dumps({"pid": os.getpid()}), flush=True)
    while True:
        try:
            line = _handoff.read_line(fd)
        except _handoff.HandoffError as e:
            raise ConfigError("WOOL_DOCKER_STANDBY", str(e)) from None
        if line is None:
            raise Unclaimed("stdin closed while parked")
        if not line.startswith(b"{"):
            try:
                grace = parse_control_line(line.decode("utf-8", errors="replace"))
            except ValueError as e:
                raise ConfigError("WOOL_DOCKER_STANDBY", str(e)) from None
            if grace is None:
                continue
            raise Unclaimed("stopped while parked")
        env = read_claim(line, os.environ)
        os.environ.update(env)
        return env


def warm() -> None:
    """Import what serving imports, so a claim pays only for the bind."""
    # gRPC reads this once at import (see `serve.run`).
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    import cloudpickle  # noqa: F401
    from wool import protocol  # noqa: F401
    from wool.runtime.worker import process  # noqa: F401
    from wool.runtime.worker.auth import WorkerCredentials  # noqa: F401
    from wool.runtime.worker.base import WorkerOptions  # noqa: F401
    from wool.runtime.worker.metadata import WorkerMetadata  # noqa: F401

    from wool_docker import _convert  # noqa: F401


def read_claim(line: bytes, environ: Mapping[str, str]) -> dict[str, str]:
    """Check a claim line and write its TLS material.

    :param line:
        The line, without its newline.
    :param environ:
        The container's environment (the claim's variables are laid over it
        to find the TLS paths).
    :returns:
        The claim's variables.
    :raises ConfigError:
        If the line is not a claim, names a variable that is not the worker's,
        or its TLS material cannot be written.
    """
    try:
        claim = json.loads(line)
    except ValueError:
        raise ConfigError("WOOL_DOCKER_STANDBY", "the claim is not JSON") from None
    if not isinstance(claim, dict) or set(claim) != {"env", "tls"}:
        raise ConfigError("WOOL_DOCKER_STANDBY", "a claim holds exactly 'env' and 'tls'")
    env = claim["env"]
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ConfigError(
            "WOOL_DOCKER_STANDBY", "a claim's env maps variable names to text"
        )
    if unknown := sorted(set(env) - CLAIM_VARIABLES):
        raise ConfigError("WOOL_DOCKER_STANDBY", f"a claim may not set {unknown[0]}")
    if claim["tls"] is not None:
        try:
            _handoff.write_tls(claim["tls"], {**environ, **env})
        except _handoff.HandoffError as e:
            raise ConfigError("WOOL_DOCKER_STANDBY", str(e)) from None
    return env
