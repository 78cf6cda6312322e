"""How the worker is stopped: signals and the owner's commands on stdin.

wool's own SIGTERM handler cancels in-flight work at once; `stop_controls`
replaces it with this package's policy (see the package's docstring), and
`Stopper` turns every request into one wool service stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Final

if TYPE_CHECKING:
    from wool.runtime.worker.service import WorkerService

# One logger for the whole entry point: its name is in every line the worker logs.
logger = logging.getLogger("wool_docker.entrypoint")

_STDIN_CHUNK: Final[int] = 4096
"""Bytes read from stdin at a time by the control thread."""


def parse_control_line(line: str) -> float | None:
    """Parse one owner command from stdin.

    :param line:
        The line, without its newline.
    :returns:
        The grace of a ``stop <grace>`` command, or ``None`` for a blank line.
    :raises ValueError:
        If the line is not a command this program understands.
    """
    words = line.split()
    if not words:
        return None
    if len(words) == 2 and words[0] == "stop":
        try:
            grace = float(words[1])
        except ValueError:
            raise ValueError(f"bad grace in {line!r}") from None
        if math.isnan(grace):
            raise ValueError(f"bad grace in {line!r}")
        return grace
    raise ValueError(f"unknown command {line!r}")


class Stopper:
    """Turns stop requests from signals and stdin into one wool service stop.

    :param loop:
        The worker's running event loop.
    :param service:
        The worker's `WorkerService`.
    :param schedule_stop:
        wool's `_schedule_stop`, safe to call from any thread.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        service: WorkerService,
        schedule_stop: Callable[[asyncio.AbstractEventLoop, WorkerService, float], None],
    ):
        self._loop = loop
        self._service = service
        self._schedule_stop = schedule_stop
        self._lock = threading.Lock()
        self._grace: float | None = None

    def request(self, grace: float, reason: str) -> None:
        """Stop the worker, unless a stop was already requested.

        :param grace:
            ``0`` cancels in-flight tasks now, a negative value drains them
            indefinitely, a positive value drains at most that many seconds.
        :param reason:
            What asked, for the log.
        """
        with self._lock:
            earlier = self._grace
            if earlier is None:
                self._grace = grace
        if earlier is not None:
            # wool's WorkerService.stop ignores every call after the first.
            logger.info(
                "%s: already stopping (%s); ignored", reason, _describe_grace(earlier)
            )
            return
        # Scheduled before it is logged: a routine that blocks stderr (a full
        # pipe, an owner slow to read) must not hold up its worker's stop.
        self._schedule_stop(self._loop, self._service, grace)
        logger.info("%s: stopping (%s)", reason, _describe_grace(grace))


@contextlib.contextmanager
def stop_controls(
    service: WorkerService,
    *,
    schedule_stop: Callable[[asyncio.AbstractEventLoop, WorkerService, float], None],
    stdin_control: bool,
    deregister_delay: float = 0.0,
) -> Iterator[None]:
    """Stand-in for wool's ``_signal_handlers``: our stop policy for the server.

    Entered by wool inside the worker's running loop, before the server starts.

    :param service:
        The worker's `WorkerService`.
    :param schedule_stop:
        wool's `_schedule_stop`.
    :param stdin_control:
        Whether to start the stdin control thread.
    :param deregister_delay:
        Seconds to keep serving after SIGTERM before the drain.
    :yields:
        Control while the server runs.
    """
    loop = asyncio.get_running_loop()
    stopper = Stopper(loop, service, schedule_stop)

    # On the loop rather than signal.signal: the handler then never re-enters
    # itself mid-request when a second signal lands.
    def on_sigterm() -> None:
        if deregister_delay > 0:
            logger.info(
                "SIGTERM: serving %gs more while discovery drops this worker",
                deregister_delay,
            )
        # A stop requested meanwhile (SIGINT, stdin) wins; this one is then ignored.
        loop.call_later(deregister_delay, stopper.request, -1.0, "SIGTERM")

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, stopper.request, -1.0, "SIGINT")
    if stdin_control:
        threading.Thread(
            target=_read_stdin_control,
            args=(sys.stdin.fileno() if sys.stdin else 0, stopper),
            name="wool-docker-stdin",
            daemon=True,
        ).start()
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _read_stdin_control(fd: int, stopper: Stopper) -> None:
    """Read owner commands from stdin until end of file.

    Reads the raw descriptor: a daemon thread blocked inside ``sys.stdin``'s
    buffer would hold its lock and can abort interpreter shutdown.

    :param fd:
        The stdin file descriptor.
    :param stopper:
        Where stop requests go.
    """
    pending = b""
    while True:
        try:
            chunk = os.read(fd, _STDIN_CHUNK)
        except OSError as e:
            logger.warning("Cannot read stdin (%s); treating it as closed", e)
            chunk = b""
        if not chunk:
            if pending.strip():
                _handle_control_line(pending, stopper)
            stopper.request(0.0, "stdin closed (owner gone)")
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            _handle_control_line(raw, stopper)


def _handle_control_line(raw: bytes, stopper: Stopper) -> None:
    """Act on one stdin line, warning about ones not understood.

    :param raw:
        The line's bytes, without the newline.
    :param stopper:
        Where stop requests go.
    """
    line = raw.decode("utf-8", errors="replace").strip()
    try:
        grace = parse_control_line(line)
    except ValueError as e:
        logger.warning("Ignoring stdin line: %s", e)
        return
    if grace is not None:
        stopper.request(grace, f"stdin {line!r}")


def _describe_grace(grace: float) -> str:
    """Say in words what a stop grace does, for the log.

    :param grace:
        The grace.
    :returns:
        A short phrase.
    """
    if grace == 0:
        return "cancelling in-flight tasks"
    if grace < 0:
        return "draining in-flight tasks"
    return f"draining in-flight tasks for up to {grace:g}s"
