"""One subscriber implementation in its own process, driven over stdin/stdout.

``python bench/subscriber.py IMPL NETWORK RUN_ID`` with IMPL one of ``native``
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
import json
import resource
import sys
import time
import traceback
from collections import Counter
from typing import Any

import aiodocker
from baseline import AiodockerSubscriber
from common import selector

from wool_docker import DockerDiscovery
from wool_docker import _native

HOLD = 0.2
"""Seconds the busy loop's callback holds the loop."""

PERIOD = 0.5
"""Seconds between the starts of two holds."""


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Impl:
    """One way to subscribe; ``next`` returns (kind, id32, arrival_ns, observed_ns)."""

    def __init__(self, network: str, run_id: str):
        self.network = network
        self.selector = selector(run_id)

    async def open(self) -> None:
        raise NotImplementedError

    async def next(self) -> tuple[str, str, int, int]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Native(Impl):
    async def open(self) -> None:
        self.subscription = await _native.subscribe(self.selector, self.network, None)

    async def next(self) -> tuple[str, str, int, int]:
        # The native subscription hands over batches; keep the rest for later calls,
        # all stamped with the batch's arrival time.
        while True:
            if not getattr(self, "pending", None):
                batch = await self.subscription.next()
                arrival = time.time_ns()
                if batch is None:
                    raise ConnectionError("subscription closed")
                self.pending = [(kind, record, arrival) for kind, record in batch]
            kind, record, arrival = self.pending.pop(0)
            if kind == "warning":
                print(f"warning: {record}", file=sys.stderr)
                continue
            assert isinstance(record, dict)
            return kind, record["container_id"][:32], arrival, int(record["observed_ns"])

    async def close(self) -> None:
        if (subscription := getattr(self, "subscription", None)) is not None:
            subscription.close()


class Public(Impl):
    async def open(self) -> None:
        discovery = DockerDiscovery(network=self.network, labels=self.selector)
        self.iterator = aiter(discovery.subscriber)

    async def next(self) -> tuple[str, str, int, int]:
        event = await anext(self.iterator)
        arrival = time.time_ns()
        return event.type, event.metadata.uid.hex, arrival, 0

    async def close(self) -> None:
        aclose = getattr(getattr(self, "iterator", None), "aclose", None)
        if aclose is not None:
            await aclose()


class Baseline(Impl):
    client: aiodocker.Docker | None = None
    """One client per process, reused like the native core reuses its connection."""

    async def open(self) -> None:
        if Baseline.client is None:
            Baseline.client = aiodocker.Docker()
        self.subscriber = AiodockerSubscriber(
            self.selector, self.network, Baseline.client
        )
        await self.subscriber.__aenter__()

    async def next(self) -> tuple[str, str, int, int]:
        kind, record = await anext(self.subscriber)
        arrival = time.time_ns()
        return kind, record["id"][:32], arrival, record["observed_ns"]

    async def close(self) -> None:
        if (subscriber := getattr(self, "subscriber", None)) is not None:
            await subscriber.__aexit__(None, None, None)


IMPLS = {"native": Native, "public": Public, "aiodocker": Baseline}


class Hog:
    """Holds the loop with a CPU-bound busy-wait of HOLD every PERIOD seconds."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None
        self.holds = 0
        self.held = 0.0

    def start(self) -> None:
        self.handle = self.loop.call_later(PERIOD - HOLD, self._spin)

    def _spin(self) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < HOLD:
            pass
        self.holds += 1
        self.held += time.perf_counter() - start
        self.handle = self.loop.call_later(PERIOD - HOLD, self._spin)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class Follower:
    """Records every event of one subscription."""

    def __init__(self, impl: Impl):
        self.impl = impl
        self.events: list[tuple[str, str, int, int]] = []
        self.added: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.hog: Hog | None = None

    async def start(self, busy: bool) -> None:
        async with asyncio.timeout(60):
            await self.impl.open()
        self.task = asyncio.create_task(self._consume())
        if busy:
            self.hog = Hog()
            self.hog.start()

    async def _consume(self) -> None:
        while True:
            event = await self.impl.next()
            self.events.append(event)
            kind, cid = event[0], event[1]
            if kind == "worker-added":
                self.added[cid] += 1
            elif kind == "worker-dropped":
                self.dropped[cid] += 1
            self.changed.set()

    def missing(
        self, added: list[str], dropped: list[str]
    ) -> tuple[list[str], list[str]]:
        return (
            [c for c in added if not self.added[c]],
            [c for c in dropped if not self.dropped[c]],
        )

    async def wait_for(
        self, added: list[str], dropped: list[str], timeout: float
    ) -> dict:
        try:
            async with asyncio.timeout(timeout):
                while any(self.missing(added, dropped)):
                    if self.task is not None and self.task.done():
                        self.task.result()
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            pass
        missing_added, missing_dropped = self.missing(added, dropped)
        return {
            "ok": not (missing_added or missing_dropped),
            "missing_added": missing_added,
            "missing_dropped": missing_dropped,
        }

    async def stop(self) -> dict[str, Any]:
        if self.hog is not None:
            self.hog.stop()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.impl.close()
        final = sorted(c for c in self.added if self.added[c] > self.dropped[c])
        return {
            "events": self.events,
            "final": final,
            "holds": self.hog.holds if self.hog else 0,
            "held": self.hog.held if self.hog else 0.0,
        }


async def sync(impl_type: type[Impl], args: tuple[str, str], command: dict) -> dict:
    expect, repeats, timeout = command["expect"], command["repeats"], command["timeout"]
    times, firsts, cpus = [], [], []
    for _ in range(repeats):
        impl = impl_type(*args)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
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


async def idle(impl_type: type[Impl], args: tuple[str, str], command: dict) -> dict:
    before = rss_kb()
    follower = Follower(impl_type(*args))
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
    impl_type = IMPLS[impl_name]
    args = (network, run_id)
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
                    reply(await sync(impl_type, args, command))
                case "follow":
                    follower = Follower(impl_type(*args))
                    await follower.start(command["busy"])
                    reply({"ok": True})
                case "await":
                    assert follower is not None
                    reply(
                        await follower.wait_for(
                            command["added"], command["dropped"], command["timeout"]
                        )
                    )
                case "report":
                    assert follower is not None
                    reply(await follower.stop())
                    follower = None
                case "idle":
                    reply(await idle(impl_type, args, command))
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
