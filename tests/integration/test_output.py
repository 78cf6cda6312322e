"""What a worker container prints cannot hurt its owner (issue 18, requirement 2).

The owner (this test process) reads every byte its containers print. Whatever
a routine prints, the owner's memory stays bounded, its CPU grows linearly
with the bytes, lines reach `logging` capped and without terminal escapes, and
a stop still ends a container that no longer listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from collections.abc import Iterator
from typing import TypeVar
from uuid import uuid4

import pytest
import wool

from wool_docker import DockerDiscovery

from . import floods

pytestmark = pytest.mark.integration

T = TypeVar("T")

TIMEOUT = 120.0
"""Seconds any single wait of these tests may take."""

MIB = 1 << 20

FLOOD = 256 * MIB
"""Bytes each flood writes."""

RSS_BOUND = 32 * MIB
"""How much the owner's resident memory may grow while a flood is read."""

MAX_LINE = 64 * 1024
"""The core's line cap (``output::MAX_LINE``)."""

STOP_MARGIN = 5.0
"""The core's kill margin past a stop's grace (``worker::STOP_MARGIN``)."""

ENGINE_SLACK = 15.0
"""Seconds the Engine may take to kill and remove a container on a busy host."""


def _status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


async def measured(call: Awaitable[T]) -> tuple[T, float, int]:
    """Await ``call``; return its result, the CPU seconds this process spent
    meanwhile (every thread: the native core's included) and how far its
    resident memory rose above where it started."""
    # Resets the peak (VmHWM) to the current resident size.
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    rss = _status("VmRSS")
    cpu = time.process_time()
    async with asyncio.timeout(TIMEOUT):
        result = await call
    return result, time.process_time() - cpu, _status("VmHWM") - rss


class Records(logging.Handler):
    """Records of ``wool_docker.worker`` whose message contains ``needle``."""

    def __init__(self, needle: str):
        super().__init__(logging.INFO)
        self.needle = needle
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.needle in message:
            self.messages.append(message)


@contextlib.contextmanager
def records(needle: str) -> Iterator[Records]:
    """Collect container output records containing ``needle`` meanwhile.

    They do not propagate meanwhile: pytest's log capture would keep every
    record, in this process, and count against its memory.
    """
    logger = logging.getLogger("wool_docker.worker")
    handler = Records(needle)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def pool(case, spawn: int = 1) -> wool.WorkerPool:
    """A pool of default `DockerWorker`s of this test (output logged)."""
    return wool.WorkerPool(
        spawn=spawn,
        worker=lambda *tags, **kw: case.worker(*tags, **kw),
        discovery=DockerDiscovery(network=case.network, labels=case.labels),
    )


class TestOutput:
    @pytest.mark.asyncio
    async def test_flood_without_newline_and_of_long_lines(self, case):
        """Test floods of output the owner must read.

        Given:
            A pool of one default worker (its output logged)
        When:
            A routine writes 256 MiB of 100-byte lines to stderr, then 256 MiB
            without a newline, then 256 lines of 1 MiB
        Then:
            Each routine should return; the owner's resident memory should
            grow by less than 32 MiB during each; the flood without a newline
            should cost the owner less than twice the CPU of the ordinary
            lines; each 1 MiB line should reach logging capped, with a marker
            saying how many bytes were dropped; and the pool should exit
            cleanly
        """
        # Arrange, act
        async with asyncio.timeout(5 * TIMEOUT), pool(case):
            _, lines_cpu, lines_rss = await measured(floods.flood(FLOOD, 100))
            _, flat_cpu, flat_rss = await measured(floods.flood(FLOOD, 0))
            with records("bytes dropped") as capped:
                _, _, long_rss = await measured(floods.flood(FLOOD, MIB))

        # Assert
        assert lines_rss < RSS_BOUND, f"ordinary lines: RSS +{lines_rss / MIB:.1f} MiB"
        assert flat_rss < RSS_BOUND, f"no newline: RSS +{flat_rss / MIB:.1f} MiB"
        assert long_rss < RSS_BOUND, f"1 MiB lines: RSS +{long_rss / MIB:.1f} MiB"
        assert flat_cpu < 2 * lines_cpu, (
            f"no newline cost {flat_cpu:.2f}s of CPU, ordinary lines {lines_cpu:.2f}s"
        )
        # Python may not keep up with every record (drops are counted), but
        # none that arrives is longer than the cap. The no-newline flood's one
        # line may arrive here too: it ends only when the next flood begins.
        dropped = MIB - 1 - MAX_LINE
        marker = f"… [line truncated: {dropped} bytes dropped]"
        assert any(message.endswith(marker) for message in capped.messages)
        for message in capped.messages:
            assert len(message.encode()) < MAX_LINE + 200
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_progress_bar(self, case):
        """Test a tqdm-style progress bar (100,000 ``\\r`` updates, 9 MB).

        Given:
            A started default worker
        When:
            A routine draws a progress bar on stderr, flushed at every update
        Then:
            It should cost the owner less than 10 % of the routine's time in
            CPU, and reach logging as one record: the bar's last state
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        token = uuid4().hex
        async with wool.WorkerProxy(workers=[worker.metadata]):
            with records(token) as bar:
                # Act
                took, cpu, _ = await measured(floods.progress(token, 100_000))
                async with asyncio.timeout(TIMEOUT):
                    await worker.stop()

        # Assert
        assert cpu < 0.1 * took, f"owner CPU {cpu:.2f}s for a {took:.2f}s routine"
        assert len(bar.messages) == 1, bar.messages[:3]
        assert "100%" in bar.messages[0] and "100000/100000" in bar.messages[0]

    @pytest.mark.asyncio
    async def test_escape_sequences(self, case, output):
        """Test a line full of terminal escapes and control characters.

        Given:
            A started worker
        When:
            A routine prints colours, a window title, a hyperlink, a bell and
            an erase-line sequence
        Then:
            The log record should hold the text without any ESC or BEL byte,
            the bell shown as ``\\x07``
        """
        # Arrange
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        token = uuid4().hex
        async with wool.WorkerProxy(workers=[worker.metadata]):
            # Act
            async with asyncio.timeout(TIMEOUT):
                await floods.escapes(token)
            line = await output.wait_for(token, timeout=TIMEOUT)
        async with asyncio.timeout(TIMEOUT):
            await worker.stop()

        # Assert
        assert line.endswith(f"red {token} link \\x07bell")
        assert "\x1b" not in line and "\x07" not in line

    @pytest.mark.asyncio
    async def test_stop_of_a_wedged_container(self, case, output):
        """Test stopping a container that no longer acts on its control channel.

        Given:
            A started worker whose routine left its stderr blocked (a full
            pipe nobody reads), so the server blocks logging the stop command
        When:
            The worker is stopped with ``grace=1``
        Then:
            The container should be killed past the grace and the margin, and
            removed, within grace + margin + the Engine's own time
        """
        # Arrange
        grace = 1.0
        worker = case.worker()
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
        token = uuid4().hex
        async with wool.WorkerProxy(workers=[worker.metadata]):
            call = asyncio.create_task(floods.wedge(token))
            await output.wait_for(f"wedged {token}", timeout=TIMEOUT)

            # Act
            start = time.monotonic()
            async with asyncio.timeout(TIMEOUT):
                await worker.stop(grace=grace)
            took = time.monotonic() - start
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT):
                    await call

        # Assert
        assert case.containers() == []
        # Killed at the bound, not stopped by itself: the server was wedged.
        assert took >= grace + STOP_MARGIN - 0.5, f"stop took {took:.1f}s"
        assert took < grace + STOP_MARGIN + ENGINE_SLACK, f"stop took {took:.1f}s"
