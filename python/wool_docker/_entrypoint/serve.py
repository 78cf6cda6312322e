"""Serving: wool's worker server run in this process, and the ready line.

wool and grpc are imported only here, and only once the configuration has
been accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
from typing import Any
from typing import Final

from wool_docker import _native
from wool_docker._entrypoint import lifeline
from wool_docker._entrypoint.config import EXIT_FAILURE
from wool_docker._entrypoint.config import EXIT_OK
from wool_docker._entrypoint.config import Config
from wool_docker._entrypoint.config import ConfigError
from wool_docker._entrypoint.config import default_uid
from wool_docker._entrypoint.control import stop_controls

# One logger for the whole entry point: its name is in every line the worker logs.
logger = logging.getLogger("wool_docker.entrypoint")

READY_PREFIX: Final[str] = _native.READY_PREFIX
"""Start of the single stdout line announcing that the server is bound.

Followed by a compact JSON object; the owning process matches on it, so it is
part of the image's contract (defined once, in the native core)."""


def run(config: Config) -> int:
    """Serve the worker in this process until it is stopped.

    :param config:
        The parsed configuration.
    :returns:
        `EXIT_OK` after a clean stop, `EXIT_FAILURE` if the server crashed.
    :raises ConfigError:
        If ``WOOL_OPTIONS`` or the TLS files are rejected by wool.
    """
    # WorkerProcess.start sets this for the processes it spawns; we skip start,
    # and gRPC reads it once at import, so it must be in place before wool loads.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

    from wool.runtime.worker import process as wool_process
    from wool.runtime.worker.auth import WorkerCredentials

    options = worker_options(config.options, config.server_options)
    backpressure = None
    if config.backpressure is not None:
        import cloudpickle

        try:
            backpressure = cloudpickle.loads(config.backpressure)
        except Exception as e:
            raise ConfigError(
                "WOOL_BACKPRESSURE", f"cannot unpickle the admission hook: {e}"
            ) from None
    credentials = None
    if config.tls is not None:
        ca, cert, key = config.tls
        try:
            credentials = WorkerCredentials.from_files(
                ca_path=ca, key_path=key, cert_path=cert, mutual=config.tls_mutual
            )
        except OSError as e:
            variable = {ca: "WOOL_TLS_CA", cert: "WOOL_TLS_CERT", key: "WOOL_TLS_KEY"}
            raise ConfigError(
                variable.get(e.filename, "WOOL_TLS_CA"), f"cannot read: {e}"
            ) from None

    # Only now, so nothing is logged for a configuration that is then rejected.
    uid = config.uid if config.uid is not None else default_uid()
    worker = wool_process.WorkerProcess(
        uid=uid,
        host=config.host,
        port=config.port,
        shutdown_grace_period=config.shutdown_grace,
        credentials=credentials,
        options=options,
        tags=config.tags,
        extra=config.extra,
        identity=config.identity,
        backpressure=backpressure,
        **(
            {}
            if config.proxy_pool_ttl is None
            else {"proxy_pool_ttl": config.proxy_pool_ttl}
        ),
    )
    announcer = threading.Thread(
        target=_announce_ready,
        args=(worker._get_metadata,),
        name="wool-docker-ready",
        daemon=True,
    )
    announcer.start()

    # wool 0.15 offers no hook for its shutdown policy: `_serve` enters the
    # module-level `_signal_handlers(service)` inside its loop, and its SIGTERM
    # handler cancels in-flight work at once. The name is looked up at call
    # time, so swapping it gives us the loop and service to stop with our own
    # policy. Private API, hence the pin to wool<0.16.
    def schedule_stop(
        loop: asyncio.AbstractEventLoop, service: Any, grace: float
    ) -> None:
        if grace == 0:
            # wool stops its gRPC server with the shutdown grace even after
            # cancelling every task, and a call whose cancellation has not
            # reached its stream holds that stop for the whole grace (seen:
            # 30 s, about one "stop 0" in ten). Cancelling means now.
            worker._shutdown_grace_period = 0
        wool_process._schedule_stop(loop, service, grace)

    original = wool_process._signal_handlers
    wool_process._signal_handlers = lambda service: stop_controls(
        service,
        schedule_stop=schedule_stop,
        stdin_control=config.stdin_control,
        deregister_delay=config.deregister_delay,
    )
    try:
        worker.run()
    except Exception:
        # WorkerProcess.run has already logged the traceback.
        return EXIT_FAILURE
    finally:
        wool_process._signal_handlers = original
        # Unblocks the announcer if the server died before reporting metadata.
        worker._set_metadata.close()
        announcer.join(timeout=5)
    logger.info("Worker stopped")
    return EXIT_OK


def worker_options(raw: dict[str, Any], server: dict[str, Any] | None = None) -> Any:
    """Build wool's `WorkerOptions` from ``WOOL_OPTIONS`` and ``WOOL_SERVER_OPTIONS``.

    :param raw:
        The decoded ``WOOL_OPTIONS`` object of `ChannelOptions` fields.
    :param server:
        The decoded ``WOOL_SERVER_OPTIONS`` object of the other `WorkerOptions`
        fields.
    :returns:
        A `wool.runtime.worker.base.WorkerOptions`.
    :raises ConfigError:
        For an unknown field, a value of the wrong type, or options wool
        rejects.
    """
    # Imports wool and grpc: only once the server is about to be built.
    from wool.runtime.worker.base import WorkerOptions

    from wool_docker._convert import channel_options

    try:
        channel = channel_options(raw, strict=True)
    except ValueError as e:
        raise ConfigError("WOOL_OPTIONS", str(e)) from None
    server = dict(server or {})
    known = {f.name for f in dataclasses.fields(WorkerOptions)} - {"channel"}
    if unknown := sorted(set(server) - known):
        raise ConfigError(
            "WOOL_SERVER_OPTIONS",
            f"unknown option {unknown[0]!r}; "
            f"expected some of {', '.join(sorted(known))}",
        )
    for name, value in server.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(
                "WOOL_SERVER_OPTIONS", f"{name} must be an integer or null"
            )
    try:
        return WorkerOptions(channel=channel, **server)
    except ValueError as e:
        raise ConfigError("WOOL_SERVER_OPTIONS", str(e)) from None


def _options_fields(options: Any) -> dict[str, Any] | None:
    """The advertised channel options as the label schema writes them."""
    if options is None:
        return None
    from wool_docker._convert import options_fields

    return options_fields(options)


def _announce_ready(connection: Any) -> None:
    """Print the ready line once wool reports the bound server's metadata.

    Runs on a thread: wool sends the metadata over its pipe from inside its
    event loop, right after the server has bound.

    :param connection:
        The read end of the worker's metadata pipe.
    """
    from wool import protocol
    from wool.runtime.worker.metadata import WorkerMetadata

    try:
        payload = connection.recv()
    except (EOFError, OSError):
        return  # The server never came up; its failure is logged elsewhere.
    finally:
        connection.close()
    metadata = WorkerMetadata.from_protobuf(protocol.WorkerMetadata.FromString(payload))
    ready = {
        "uid": str(metadata.uid),
        "address": metadata.address,
        "port": int(metadata.address.rsplit(":", 1)[1]),
        "pid": metadata.pid,
        "version": metadata.version,
        "secure": metadata.secure,
        "identity": metadata.identity,
        "tags": sorted(metadata.tags),
        "extra": dict(metadata.extra),
        # A standby container's labels could not carry these: discovery reads them here.
        "options": _options_fields(metadata.options),
    }
    line = READY_PREFIX + json.dumps(ready, separators=(",", ":"))
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError):
        logger.warning("Could not write the ready line: stdout is closed")
    if os.environ.get(lifeline.ADDRESS_VARIABLE):
        try:
            lifeline.announce(line)
        except OSError as e:
            logger.warning("Could not write the ready line to the owner: %s", e)
    logger.info("Worker %s ready on %s", metadata.uid, metadata.address)
