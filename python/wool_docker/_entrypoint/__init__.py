"""Entry point of a wool worker container: ``python3 -m wool_docker._entrypoint``.

Serves wool's own worker (`wool.runtime.worker.process.WorkerProcess`, run in
this process rather than spawned) with configuration taken from the
environment, announces readiness on stdout, and drains in-flight work when
asked to stop.

Environment variables:

- ``WOOL_PORT`` -- TCP port to bind, 1-65535. Default ``50051``.
- ``WOOL_BIND_HOST`` -- host to bind. Default ``0.0.0.0``.
- ``WOOL_UID`` -- the worker's UUID. Default: derived from this container's
  64-hex id as ``uuid.UUID(hex=container_id[:32])``, so the owner can compute
  it from the id alone; a random UUID when the id cannot be found.
- ``WOOL_TAGS`` -- comma-separated capability tags; empty items are ignored.
- ``WOOL_EXTRA`` -- JSON object of string keys to string values, advertised
  as the worker's extra metadata. Default ``{}``.
- ``WOOL_OPTIONS`` -- JSON object of `wool.runtime.worker.base.ChannelOptions`
  fields; ``compression`` may be an int or a `grpc.Compression` member name.
  Default ``{}`` (wool's defaults).
- ``WOOL_SERVER_OPTIONS`` -- JSON object of the server-side fields of
  `wool.runtime.worker.base.WorkerOptions` (every field but ``channel``).
- ``WOOL_PROXY_POOL_TTL`` -- positive float, seconds the worker keeps an idle
  proxy for nested routines. Default: wool's.
- ``WOOL_BACKPRESSURE`` -- base64 of a cloudpickled admission hook (wool's
  ``backpressure``), as `DockerWorker` ships it.
- ``WOOL_IDENTITY`` -- workload identity to advertise; requires TLS.
- ``WOOL_TLS_CA``, ``WOOL_TLS_CERT``, ``WOOL_TLS_KEY`` -- PEM file paths; all
  three or none. With none the worker serves plaintext.
- ``WOOL_TLS_MUTUAL`` -- boolean, require client certificates. Default
  ``true``.
- ``WOOL_SHUTDOWN_GRACE`` -- positive float, seconds the gRPC server gives
  open calls once the worker service has stopped. Default ``60``.
- ``WOOL_DOCKER_WORKER`` -- the owner's one JSON document of the settings
  above (``uid``, ``port``, ``tags``, ``extra``, ``options``, ``identity``,
  ``shutdown_grace``, ``server_options``, ``proxy_pool_ttl``,
  ``backpressure``); a field it holds wins over its variable.
- ``WOOL_DOCKER_STDIN_CONTROL`` -- boolean; when true, stdin carries owner
  commands (see below). Default off: stdin is never read.
- ``WOOL_DEREGISTER_DELAY`` -- non-negative float, seconds a worker keeps
  serving after SIGTERM before it drains. Default ``1``.
- ``WOOL_DOCKER_TLS_STDIN`` -- boolean; when true, the first line on stdin
  carries the TLS material, written to the ``WOOL_TLS_*`` paths (mode 0400)
  before anything else is read (see `wool_docker._handoff`).
- ``WOOL_ALLOW_ROOT`` -- boolean; the worker refuses to serve as root (uid 0)
  unless this is true. Default off.
- ``WOOL_DOCKER_LIFELINE`` -- ``host:port`` of the owner's lifeline, with
  ``WOOL_DOCKER_LIFELINE_TOKEN``: a Swarm worker connects there and takes the
  connection as its stdin, and writes its ready line to it too (see
  `wool_docker._entrypoint.lifeline`).
- ``WOOL_DOCKER_STANDBY`` -- boolean; when true, the container parks: it
  imports wool, prints a parked line and waits on stdin for its claim, which
  sets the worker's variables (see `wool_docker._entrypoint.standby`). Default
  off.

Booleans accept ``1/0``, ``true/false``, ``yes/no`` and ``on/off``.

Bad configuration prints one line, ``wool-docker: <VARIABLE>: <problem>``, to
stderr and exits 2.

Once the server is bound, exactly one line goes to stdout: `READY_PREFIX`
followed by a compact JSON object, for example::

    wool-docker ready {"uid":"b2d8782d-56bd-47d7-6198-8603338c0081",...}

Its keys are ``uid`` (str), ``address`` (str, ``host:port`` as bound, e.g.
``0.0.0.0:50051``), ``port`` (int), ``pid`` (int), ``version`` (str, wool's
protocol version), ``secure`` (bool), ``identity`` (str or null), ``tags``
(sorted list of str) and ``extra`` (object of str to str).

Stopping: SIGTERM first keeps serving for ``WOOL_DEREGISTER_DELAY`` seconds:
the Engine's ``kill`` event makes every `DockerDiscovery` drop the worker
within milliseconds, and the delay lets calls already routed here land instead
of being refused by a draining server (which wool 0.15's retry can turn into
``NoWorkersAvailable``). Then SIGTERM, and SIGINT at once, drain in-flight
tasks without a time limit,
since ``docker stop``, Compose scale-down and Swarm expect a drain and
Docker's own stop timeout escalates to SIGKILL. Under stdin control the line
``stop <grace>`` stops with that grace (``0`` cancels in-flight tasks now, a
negative value drains indefinitely, a positive value drains at most that many
seconds), and end of file -- the owner is gone -- stops with grace ``0``. The
first stop request wins; later ones are logged and ignored, because wool's
service stop is idempotent. A clean stop exits 0.

``--health`` TCP-connects to the worker port (on ``127.0.0.1`` unless
``WOOL_BIND_HOST`` names a specific address) with a 2 s timeout and exits 0
if it connects, 1 otherwise; it is the image's ``HEALTHCHECK`` and never
imports wool or grpc, so it stays fast.

Layout: `config` reads and checks what the container was given (environment,
TLS on stdin) and holds the exit codes; `health` is ``--health``; `lifeline`
connects a Swarm worker's stdin to its owner; `control`
turns signals and stdin commands into one stop; `standby` parks a standby
container until its claim; `serve` runs wool's server and prints the ready
line. Each imports only those before it; `main` wires them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Final

from wool_docker._entrypoint import lifeline
from wool_docker._entrypoint.config import DEFAULT_BIND_HOST
from wool_docker._entrypoint.config import DEFAULT_DEREGISTER_DELAY
from wool_docker._entrypoint.config import DEFAULT_PORT
from wool_docker._entrypoint.config import DEFAULT_SHUTDOWN_GRACE
from wool_docker._entrypoint.config import EXIT_CONFIG
from wool_docker._entrypoint.config import EXIT_FAILURE
from wool_docker._entrypoint.config import EXIT_OK
from wool_docker._entrypoint.config import ConfigError
from wool_docker._entrypoint.config import load_config
from wool_docker._entrypoint.config import read_boolean
from wool_docker._entrypoint.config import receive_tls
from wool_docker._entrypoint.config import refuse_root
from wool_docker._entrypoint.health import HEALTH_TIMEOUT
from wool_docker._entrypoint.health import check
from wool_docker._entrypoint.serve import READY_PREFIX
from wool_docker._entrypoint.serve import run
from wool_docker._entrypoint.standby import Unclaimed
from wool_docker._entrypoint.standby import park

__all__ = [
    "DEFAULT_BIND_HOST",
    "DEFAULT_DEREGISTER_DELAY",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_GRACE",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "HEALTH_TIMEOUT",
    "READY_PREFIX",
    "main",
]

_HEALTH_FLAG: Final[str] = "--health"
"""Argument selecting health-check mode."""


def main(argv: list[str] | None = None) -> int:
    """Run the worker, or with ``--health`` probe a running one.

    :param argv:
        Command-line arguments without the program name; defaults to
        ``sys.argv[1:]``.
    :returns:
        The process exit code.
    """
    args = sys.argv[1:] if argv is None else argv
    if args == [_HEALTH_FLAG]:
        return check(os.environ)
    if args:
        print(
            f"usage: python3 -m wool_docker._entrypoint [{_HEALTH_FLAG}]",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    # Before wool's WorkerProcess.run, whose own basicConfig then does nothing.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    relay = None
    try:
        refuse_root(os.environ)
        lifeline.attach(os.environ)
        relay = lifeline.attach_feed(os.environ)
        if read_boolean(os.environ, "WOOL_DOCKER_STANDBY", default=False):
            park(sys.stdin.fileno() if sys.stdin else 0)
        else:
            receive_tls(os.environ)
        config = load_config(os.environ)
        return run(config)
    except Unclaimed as e:
        logging.getLogger("wool_docker.entrypoint").info("%s; exiting", e)
        return EXIT_OK
    except ConfigError as e:
        print(f"wool-docker: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        # Only reachable before our handlers are installed, i.e. during start-up.
        return 128 + signal.SIGINT
    finally:
        if relay is not None:
            # The feed's relay serves this process's routines only.
            relay.terminate()
            relay.wait()
