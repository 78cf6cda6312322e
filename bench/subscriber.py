"""One subscriber implementation in its own process, driven over stdin/stdout.

``python -m bench.subscriber IMPL NETWORK RUN_ID`` with IMPL one of ``native``
(``wool_docker._native.subscribe``), ``public`` (``DockerDiscovery.subscriber``)
or ``aiodocker`` (the baseline). Each subscriber runs alone in its process, so
its event loop is idle unless the benchmark makes it busy, and its CPU time and
RSS are its own.

Commands are JSON lines on stdin; each gets one JSON line on stdout:

- ``sync`` ``{expect, repeats, timeout}``: subscribe afresh ``repeats`` times and
  time each until ``expect`` workers were added.
- ``follow`` ``{busy}``: subscribe and record every event (``time.time_ns()``
  when the event reaches Python); ``busy`` holds the loop with a CPU-bound
  200 ms busy-wait every 500 ms.
- ``await`` ``{added, dropped, timeout}``: wait until these container ids (first
  32 hex digits) have been added / dropped.
- ``report``: stop following; the recorded events and the final set.
- ``idle`` ``{expect, seconds, timeout}``: subscribe, wait for ``expect`` workers,
  then measure CPU time and RSS over ``seconds`` while subscribed.
- ``exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
import traceback
from collections import Counter
from typing import Any

import aiodocker

from wool_docker import DockerDiscovery
from wool_docker import _native

from .baseline import AiodockerSubscriber
from .common import selector

HOLD = 0.2
"""Seconds the busy loop's callback holds the loop."""

PERIOD = 0.5
"""Seconds between the starts of two holds."""

Event = tuple[str, str, int, int]
"""(kind, id32, arrival_ns, observed_ns)"""


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Native:
    """``wool_docker._native.subscribe``: batches, each stamped on arrival."""

    def __init__(self, network: str, run_id: str):
        self.network, self.selector = network, selector(run_id)
        self.subscription: Any = None
        self.pending: list[tuple[str, Any, int]] = []

    async def open(self) -> None:
        self.subscription = await _native.subscribe(self.selector, self.network, None)

    async def next(self) -> Event:
        while True:
            if not self.pending:
                batch = await self.subscription.next()
                arrival = time.time_ns()
                if batch is None:
                    raise ConnectionError("subscription closed")
                self.pending = [(kind, record, arrival) for kind, record in batch]
            kind, record, arrival = self.pending.pop(0)
            if kind == "warning":
                print(f"warning: {record}", file=sys.stderr)
                continue
            return kind, record["container_id"][:32], arrival, int(record["observed_ns"])

    async def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()


class Public(Native):
    """``DockerDiscovery.subscriber``, the public API."""

    async def open(self) -> None:
        discovery = DockerDiscovery(network=self.network, labels=self.selector)
        self.subscription = aiter(discovery.subscriber)

    async def next(self) -> Event:
        event = await anext(self.subscription)
        return event.type, event.metadata.uid.hex, time.time_ns(), 0

    async def close(self) -> None:
        if (aclose := getattr(self.subscription, "aclose", None)) is not None:
            await aclose()


class Baseline(Native):
    """The aiodocker baseline, on one client per process (reused like the native
    core reuses its connection)."""

    client: aiodocker.Docker | None = None

    async def open(self) -> None:
        if Baseline.client is None:
            Baseline.client = aiodocker.Docker()
        self.subscription = AiodockerSubscriber(
            self.selector, self.network, Baseline.client
        )
        await self.subscription.__aenter__()

    async def next(self) -> Event:
        kind, record = await anext(self.subscription)
        return kind, record["id"][:32], time.time_ns(), record["observed_ns"]

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.__aexit__(None, None, None)


IMPLS = {"native": Native, "public": Public, "aiodocker": Baseline}


class Follower:
    """Records every event of one subscription; with ``busy``, holds the loop with a
    CPU-bound busy-wait of HOLD every PERIOD seconds."""

    def __init__(self, impl: Native):
        self.impl = impl
        self.events: list[Event] = []
        self.added: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.hog: asyncio.TimerHandle | None = None
        self.holds, self.held = 0, 0.0

    async def start(self, busy: bool) -> None:
        async with asyncio.timeout(60):
            await self.impl.open()
        self.task = asyncio.create_task(self._consume())
        if busy:
            self.hog = asyncio.get_running_loop().call_later(PERIOD - HOLD, self._spin)

    def _spin(self) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < HOLD:
            pass
        self.holds += 1
        self.held += time.perf_counter() - start
        self.hog = asyncio.get_running_loop().call_later(PERIOD - HOLD, self._spin)

    async def _consume(self) -> None:
        while True:
            event = await self.impl.next()
            self.events.append(event)
            if event[0] == "worker-added":
                self.added[event[1]] += 1
            elif event[0] == "worker-dropped":
                self.dropped[event[1]] += 1
            self.changed.set()

    def missing(self, added: list[str], dropped: list[str]) -> tuple[list, list]:
        return (
            [c for c in added if not self.added[c]],
            [c for c in dropped if not self.dropped[c]],
        )

    async def wait_for(
        self, added: list[str], dropped: list[str], timeout: float
    ) -> dict:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(self.missing(added, dropped)):
                    if self.task is not None and self.task.done():
                        self.task.result()
                    self.changed.clear()
                    await self.changed.wait()
        missing_added, missing_dropped = self.missing(added, dropped)
        return {
            "ok": not (missing_added or missing_dropped),
            "missing_added": missing_added,
            "missing_dropped": missing_dropped,
        }

    async def stop(self) -> dict[str, Any]:
        if self.hog is not None:
            self.hog.cancel()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.impl.close()
        final = sorted(c for c in self.added if self.added[c] > self.dropped[c])
        return {
            "events": self.events,
            "final": final,
            "holds": self.holds,
            "held": self.held,
        }


async def sync(make: type[Native], args: tuple[str, str], command: dict) -> dict:
    expect, repeats, timeout = command["expect"], command["repeats"], command["timeout"]
    times, firsts, cpus = [], [], []
    for _ in range(repeats):
        impl = make(*args)
        cpu0, t0 = time.process_time(), time.perf_counter()
        seen: set[str] = set()
        try:
            async with asyncio.timeout(timeout):
                await impl.open()
                while len(seen) < expect:
                    kind, cid, _, _ = await impl.next()
                    if kind == "worker-added":
                        if not seen:
                            firsts.append(time.perf_counter() - t0)
                        seen.add(cid)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - cpu0)
        finally:
            await impl.close()
    return {"times": times, "first": firsts, "cpu": cpus}


async def idle(make: type[Native], args: tuple[str, str], command: dict) -> dict:
    before = rss_kb()
    follower = Follower(make(*args))
    await follower.start(busy=False)
    try:
        async with asyncio.timeout(command["timeout"]):
            while len(follower.added) < command["expect"]:
                follower.changed.clear()
                await follower.changed.wait()
        events0 = len(follower.events)
        rss0, cpu0, wall0 = rss_kb(), cpu_seconds(), time.perf_counter()
        # The measurement window itself: the subscriber sits idle for this long.
        await asyncio.sleep(command["seconds"])
        rss1, cpu1, wall1 = rss_kb(), cpu_seconds(), time.perf_counter()
        events1 = len(follower.events)
    finally:
        await follower.stop()
    return {
        "seconds": wall1 - wall0,
        "cpu": cpu1 - cpu0,
        "rss_kb_before_subscribe": before,
        "rss_kb_start": rss0,
        "rss_kb_end": rss1,
        "events_during": events1 - events0,
    }


async def main() -> None:
    impl_name, network, run_id = sys.argv[1:4]
    make, args = IMPLS[impl_name], (network, run_id)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    follower: Follower | None = None

    def reply(payload: dict) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        try:
            match command["cmd"]:
                case "sync":
                    reply(await sync(make, args, command))
                case "follow":
                    follower = Follower(make(*args))
                    await follower.start(command["busy"])
                    reply({"ok": True})
                case "await":
                    assert follower is not None
                    added, dropped = command["added"], command["dropped"]
                    reply(await follower.wait_for(added, dropped, command["timeout"]))
                case "report":
                    assert follower is not None
                    reply(await follower.stop())
                    follower = None
                case "idle":
                    reply(await idle(make, args, command))
                case "exit":
                    break
        except Exception as e:  # report, keep serving
            traceback.print_exc()
            reply({"error": f"{type(e).__name__}: {e}"})
    if follower is not None:
        await follower.stop()
    if Baseline.client is not None:
        await Baseline.client.close()


if __name__ == "__main__":
    asyncio.run(main())
