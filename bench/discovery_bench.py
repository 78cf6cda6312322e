"""Sections 3 (discovery latency), 4 (discovery scale) and 5 (aiodocker baseline).

Every subscriber under test runs alone in its own process (``subscriber.py``);
this process only generates the workload (with aiodocker) and records the
Engine's truth: each churn container's ready-line timestamp (from its log
stream with timestamps) and its kill event's ``timeNano`` (from its own event
stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import aiodocker
from common import BASE_IMAGE
from common import BENCH_DIR
from common import BENCH_LABEL
from common import READY_COMMAND
from common import Peer
from common import container_labels
from common import docker
from common import median
from common import rfc3339_ns
from common import running_ids
from common import selector
from common import summary

READY_PREFIX = "wool-docker ready "
CREATE_CONCURRENCY = 8
"""Containers created at once when creating in bulk."""

PEER_TIMEOUT = 120.0
"""Seconds a subscriber process may take to answer a simple command."""


# The Engine's side ---------------------------------------------------------------


class Engine:
    """An aiodocker client for generating workloads and reading the Engine's truth."""

    def __init__(self, run_id: str, network: str):
        self.run_id = run_id
        self.network = network
        self.client = aiodocker.Docker()
        self.names = itertools.count()
        self.health_interval = 1.0

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.events.stop()
        await self.client.close()

    def config(
        self, role: str, command: list[str], healthy: float | None
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Image": BASE_IMAGE,
            "Cmd": command,
            "Labels": container_labels(self.run_id, **{f"{BENCH_LABEL}.role": role}),
            # No AutoRemove: the benchmark removes what it kills itself, so a
            # container never has two removals racing (Engine 20.10 can leave a
            # stale endpoint on the network then, and the network cannot be
            # removed until the daemon restarts).
            "HostConfig": {"NetworkMode": self.network},
        }
        if healthy is not None:
            config["Healthcheck"] = {
                "Test": ["CMD-SHELL", "true"],
                "Interval": int(healthy * 1e9),
            }
        return config

    async def run(self, role: str, command: list[str], healthy: float | None = None):
        """Create and start a container; ``healthy``: its healthcheck interval."""
        name = f"wdb-{self.run_id}-{role}-{next(self.names)}"
        async with asyncio.timeout(120):
            return await self.client.containers.run(
                self.config(role, command, healthy), name=name
            )

    async def ready_ns(self, container: Any, timeout: float = 60.0) -> int:
        """Follow a container's output until its ready line; the line's Engine time."""
        stream = container.log(stdout=True, follow=True, timestamps=True)
        buffered = ""
        async with asyncio.timeout(timeout), contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                buffered += chunk
                while "\n" in buffered:
                    line, buffered = buffered.split("\n", 1)
                    stamp, _, text = line.partition(" ")
                    if text.startswith(READY_PREFIX):
                        return rfc3339_ns(stamp)
        raise RuntimeError(f"container {container.id[:12]} ended without a ready line")

    async def remove(self, ids: Iterable[str]) -> None:
        """Force-remove containers, a few at a time; wait until they are gone."""
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def one(cid: str) -> None:
            async with gate:
                with contextlib.suppress(aiodocker.DockerError):
                    await self.client.containers.container(cid).delete(
                        force=True, v=True
                    )

        async with asyncio.timeout(600):
            await asyncio.gather(*(one(c) for c in ids))


async def spawn_peers(impls: list[str], network: str, run_id: str) -> dict[str, Peer]:
    script = str(BENCH_DIR / "subscriber.py")
    peers = {}
    for impl in impls:
        peers[impl] = await Peer.spawn(impl, script, impl, network, run_id)
    return peers


async def close_peers(peers: dict[str, Peer]) -> None:
    await asyncio.gather(*(p.close() for p in peers.values()), return_exceptions=True)


# Section 3: latency under churn ----------------------------------------------------


async def churn_phase(
    engine: Engine,
    impls: list[str],
    busy: bool,
    kills: int,
    keep: int,
    lanes: int,
    hold: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Start ``kills + keep`` ready-line containers, ``lanes`` at a time, and kill
    ``kills`` of them, while every subscriber in ``impls`` follows in its own
    process with an idle or a busy loop."""
    run_id, network = engine.run_id, engine.network
    mode = "busy" if busy else "idle"
    kill_ns: dict[str, int] = {}
    start_ns: dict[str, int] = {}
    ready_ns: dict[str, int] = {}
    started: list[str] = []
    killed: list[str] = []
    kept: list[str] = []
    # Our own record of every start's and kill's Engine time, from the Engine's
    # event stream (only this phase's containers are looked up in it).
    watcher = aiodocker.Docker()
    since = time.time() - 1
    kills_seen = asyncio.Event()
    kill_events = watcher.events.subscribe(
        filters=json.dumps(
            {
                "type": ["container"],
                "label": [f"{BENCH_LABEL}={run_id}"],
                "event": ["kill", "start"],
            }
        ),
        since=f"{since:.3f}",
    )

    async def read_kills() -> None:
        while (event := await kill_events.get()) is not None:
            cid = event.get("id") or event["Actor"]["ID"]
            at = int(event["timeNano"])
            if event.get("Action") == "start":
                start_ns.setdefault(cid, at)
            else:
                kill_ns.setdefault(cid, at)
                kills_seen.set()

    kill_reader = asyncio.create_task(read_kills())
    peers = await spawn_peers(impls, network, run_id)
    try:
        await asyncio.gather(
            *(p.request(PEER_TIMEOUT, cmd="follow", busy=busy) for p in peers.values())
        )
        # Barrier: every subscriber has seen one container come up.
        sentinel = await engine.run("sentinel", READY_COMMAND)
        ready_ns[sentinel.id] = await engine.ready_ns(sentinel)
        started.append(sentinel.id)
        kept.append(sentinel.id)
        barrier = await asyncio.gather(
            *(
                p.request(
                    PEER_TIMEOUT,
                    cmd="await",
                    added=[sentinel.id[:32]],
                    dropped=[],
                    timeout=60,
                )
                for p in peers.values()
            )
        )
        for impl, answer in zip(peers, barrier, strict=True):
            if not answer["ok"]:
                raise RuntimeError(f"{impl} never saw the sentinel container")
        progress(f"discovery-latency ({mode} loop): subscribers live; churning")
        order = iter(range(kills + keep))
        t0 = time.perf_counter()

        async def lane() -> None:
            for i in order:
                container = await engine.run(f"churn-{mode}", READY_COMMAND)
                started.append(container.id)
                ready_ns[container.id] = await engine.ready_ns(container)
                if i >= kills:
                    kept.append(container.id)
                    continue
                # The container's lifetime: load generation, not a wait for state.
                await asyncio.sleep(hold)
                await container.kill()
                killed.append(container.id)
                await container.delete(force=True, v=True)

        async with asyncio.timeout(60 + 30 * (kills + keep)):
            await asyncio.gather(*(lane() for _ in range(lanes)))
        churn_seconds = time.perf_counter() - t0
        async with asyncio.timeout(60):
            while not all(c in kill_ns for c in killed):
                kills_seen.clear()
                await kills_seen.wait()
        truth = {c[:32] for c in await running_ids(run_id, network)}
        expected_added = [c[:32] for c in started]
        expected_dropped = [c[:32] for c in killed]
        answers = await asyncio.gather(
            *(
                p.request(
                    PEER_TIMEOUT,
                    cmd="await",
                    added=expected_added,
                    dropped=expected_dropped,
                    timeout=60,
                )
                for p in peers.values()
            )
        )
        reports = await asyncio.gather(
            *(p.request(PEER_TIMEOUT, cmd="report") for p in peers.values())
        )
    finally:
        kill_reader.cancel()
        await asyncio.gather(kill_reader, return_exceptions=True)
        await watcher.events.stop()
        await watcher.close()
        await close_peers(peers)
        await engine.remove(kept)
    result: dict[str, Any] = {
        "loop": mode,
        "started": len(started),
        "killed": len(killed),
        "kept": len(kept),
        "churn_seconds": churn_seconds,
        "truth_final": sorted(truth),
        "impls": {},
    }
    truth_ns = {
        c[:32]: {
            "start": start_ns.get(c, 0),
            "ready": ready_ns[c],
            "kill": kill_ns.get(c) if c in killed else None,
        }
        for c in started
    }
    result["ready_after_start_ms"] = summary(
        (t["ready"] - t["start"]) / 1e6 for t in truth_ns.values() if t["start"]
    )
    result["ready_before_start_second"] = sum(
        t["ready"] // 1_000_000_000 < t["start"] // 1_000_000_000
        for t in truth_ns.values()
        if t["start"]
    )
    result["truth_ns"] = truth_ns
    for impl, answer, report in zip(peers, answers, reports, strict=True):
        result["impls"][impl] = _score(report, answer, truth_ns, truth)
    return result


def _score(
    report: dict[str, Any],
    answer: dict[str, Any],
    truth_ns: dict[str, dict[str, Any]],
    truth: set[str],
) -> dict[str, Any]:
    """Latencies against the Engine's truth, and every event lost or extra.

    Added: the first ``worker-added`` against the ready line's timestamp.
    Dropped: the first ``worker-dropped`` at or after the kill, against the kill
    event's time. A drop before the kill, or of a container never killed, is a
    flap; so is any second add or drop.
    """
    added_ms: list[float] = []
    added_after_start_ms: list[float] = []
    dropped_ms: list[float] = []
    observed_ms: list[float] = []
    mismatched_observed = 0
    sequences: dict[str, list[tuple[str, int]]] = {c: [] for c in truth_ns}
    unknown = 0
    for kind, cid, arrival, observed in report["events"]:
        t = truth_ns.get(cid)
        if t is None:
            unknown += 1
            continue
        seq = sequences[cid]
        seq.append((kind, arrival))
        if kind == "worker-added" and sum(k == kind for k, _ in seq) == 1:
            added_ms.append((arrival - t["ready"]) / 1e6)
            if t["start"]:
                added_after_start_ms.append((arrival - t["start"]) / 1e6)
            if observed:
                observed_ms.append((arrival - observed) / 1e6)
                mismatched_observed += observed != t["ready"]
        elif kind == "worker-dropped" and t["kill"] is not None:
            after_kill = [a for k, a in seq if k == kind and a >= t["kill"]]
            if len(after_kill) == 1:
                dropped_ms.append((arrival - t["kill"]) / 1e6)
                if observed:
                    observed_ms.append((arrival - observed) / 1e6)
                    mismatched_observed += observed != t["kill"]
    lost_added = [
        c for c, seq in sequences.items() if not any(k == "worker-added" for k, _ in seq)
    ]
    lost_dropped = [
        c
        for c, seq in sequences.items()
        if truth_ns[c]["kill"] is not None
        and not any(k == "worker-dropped" and a >= truth_ns[c]["kill"] for k, a in seq)
    ]
    flapped = {}
    for c, seq in sequences.items():
        kinds = [k for k, _ in seq]
        expected = (
            ["worker-added", "worker-dropped"]
            if truth_ns[c]["kill"] is not None
            else ["worker-added"]
        )
        if kinds and kinds != expected and c not in lost_added:
            flapped[c] = kinds
    extra = sum(
        max(0, len(seq) - (2 if truth_ns[c]["kill"] else 1))
        for c, seq in sequences.items()
    )
    final = set(report["final"])
    return {
        "added_ms": summary(added_ms),
        "added_after_start_ms": summary(added_after_start_ms),
        "dropped_ms": summary(dropped_ms),
        "all_ms": summary(added_ms + dropped_ms),
        "observed_ms": summary(observed_ms) if observed_ms else None,
        "observed_mismatches": mismatched_observed,
        "lost": len(lost_added) + len(lost_dropped),
        "lost_added": lost_added,
        "lost_dropped": lost_dropped,
        "extra_events": extra,
        "flapped": flapped,
        "unknown_events": unknown,
        "final_exact": final == truth,
        "final_missing": sorted(truth - final),
        "final_extra": sorted(final - truth),
        "complete_in_time": answer["ok"],
        "busy_holds": report["holds"],
        "busy_held_s": report["held"],
        "raw_added_ms": added_ms,
        "raw_dropped_ms": dropped_ms,
        "events": report["events"],
    }


async def section_latency(
    engine: Engine,
    impls: list[str],
    kills: int,
    keep: int,
    lanes: int,
    hold: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    phases = {}
    for busy in (False, True):
        phase = await churn_phase(
            engine, impls, busy, kills, keep, lanes, hold, progress
        )
        phases[phase["loop"]] = phase
        for impl, score in phase["impls"].items():
            progress(
                f"discovery-latency {impl} ({phase['loop']} loop): "
                f"p50 {score['all_ms']['median']:.2f} ms, "
                f"p99 {score['all_ms']['p99']:.2f} ms, lost {score['lost']}, "
                f"final exact {score['final_exact']}"
            )
    return {
        "kills": kills,
        "keep": keep,
        "lanes": lanes,
        "hold_s": hold,
        "phases": phases,
    }


# Section 4: initial sync at scale, idle cost ---------------------------------------


def bare_list(api_version: str, run_id: str) -> tuple[float, int]:
    """The floor: ``GET /containers/json?filters=…`` over the Engine's unix socket."""
    filters = json.dumps({"label": [f"{k}={v}" for k, v in selector(run_id).items()]})
    path = f"/v{api_version}/containers/json?filters={urllib.parse.quote(filters)}"
    t0 = time.perf_counter()
    connection = _UnixHTTPConnection("/var/run/docker.sock")
    try:
        connection.request("GET", path, headers={"Host": "docker"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    elapsed = time.perf_counter() - t0
    if response.status != 200:
        raise RuntimeError(f"list failed: {response.status} {body[:200]!r}")
    return elapsed, len(json.loads(body))


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(self._path)
        self.sock = sock


async def wait_healthy(
    engine: Engine, ids: list[str], healthy: set[str], changed: asyncio.Event
) -> None:
    """Wait (bounded) until every id reported healthy, then confirm by inspect."""
    async with asyncio.timeout(120 + 2 * len(ids) + engine.health_interval):
        while True:
            while not all(c in healthy for c in ids):
                changed.clear()
                await changed.wait()
            out = await docker(
                "inspect", "--format", "{{.Id}} {{.State.Health.Status}}", *ids
            )
            states = dict(line.split() for line in out.splitlines() if line.strip())
            unhealthy = [c for c in ids if states.get(c) != "healthy"]
            if not unhealthy:
                return
            for c in unhealthy:
                healthy.discard(c)


async def section_scale(
    engine: Engine,
    impls: list[str],
    sizes: list[int],
    repeats: int,
    idle_seconds: float,
    api_version: str,
    health_interval: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Initial sync of every subscriber for each size, against the bare list.

    The containers are healthy (a ``true`` healthcheck every ``health_interval``
    seconds), so every subscriber admits them from the listing alone.
    """
    run_id, network = engine.run_id, engine.network
    engine.health_interval = health_interval
    result: dict[str, Any] = {
        "sizes": sizes,
        "repeats": repeats,
        "idle_seconds": idle_seconds,
        "health_interval_s": health_interval,
        "by_size": {},
        "idle": {},
    }
    peers = await spawn_peers(impls, network, run_id)
    ids: list[str] = []
    healthy: set[str] = set()
    changed = asyncio.Event()
    watcher = aiodocker.Docker()
    health_events = watcher.events.subscribe(
        filters=json.dumps(
            {
                "type": ["container"],
                "label": [f"{BENCH_LABEL}={run_id}"],
                "event": ["health_status"],
            }
        ),
        since=f"{time.time() - 1:.3f}",
    )

    async def read_health() -> None:
        while (event := await health_events.get()) is not None:
            if event.get("Action", event.get("status", "")).endswith(" healthy"):
                healthy.add(event.get("id") or event["Actor"]["ID"])
                changed.set()

    reader = asyncio.create_task(read_health())
    try:
        # Idle cost with a quiet Engine: a few served workers, nothing changing.
        quiet = [await engine.run("quiet", READY_COMMAND) for _ in range(4)]
        for c in quiet:
            await engine.ready_ns(c)
        progress(
            f"discovery-scale: idle subscribers, quiet Engine, {idle_seconds:.0f} s"
        )
        result["idle"]["quiet (4 workers)"] = await _idle(
            peers, len(quiet), idle_seconds, run_id
        )
        await engine.remove(c.id for c in quiet)
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create() -> str:
            async with gate:
                container = await engine.run(
                    "scale", ["sleep", "infinity"], healthy=health_interval
                )
                return container.id

        for n in sizes:
            t0 = time.perf_counter()
            async with asyncio.timeout(600 + 5 * n):
                ids += await asyncio.gather(*(create() for _ in range(n - len(ids))))
            created = time.perf_counter() - t0
            await wait_healthy(engine, ids, healthy, changed)
            progress(
                f"discovery-scale: {n} healthy containers "
                f"(created in {created:.1f} s, "
                f"healthy after {time.perf_counter() - t0:.1f} s)"
            )
            by: dict[str, Any] = {"floor": [], "floor_count": None}
            # One unrecorded cold sync per subscriber: its first connection.
            cold = await _sync_all(peers, n, 1)
            for _ in range(repeats):
                elapsed, count = bare_list(api_version, run_id)
                by["floor"].append(elapsed)
                by["floor_count"] = count
                for impl, answer in (await _sync_all(peers, n, 1)).items():
                    by.setdefault(impl, {"times": [], "first": [], "cpu": []})
                    for key in ("times", "first", "cpu"):
                        by[impl][key] += answer[key]
            by["floor_ms"] = summary(t * 1e3 for t in by["floor"])
            for impl in peers:
                by[impl]["ms"] = summary(t * 1e3 for t in by[impl]["times"])
                by[impl]["first_ms"] = summary(t * 1e3 for t in by[impl]["first"])
                by[impl]["cpu_ms"] = summary(t * 1e3 for t in by[impl]["cpu"])
                by[impl]["cold_ms"] = cold[impl]["times"][0] * 1e3
                by[impl]["ratio"] = median(by[impl]["times"]) / median(by["floor"])
            result["by_size"][str(n)] = by
            progress(
                f"discovery-scale N={n}: floor {by['floor_ms']['median']:.1f} ms; "
                + ", ".join(f"{i} {by[i]['ms']['median']:.1f} ms" for i in peers)
            )
        progress(
            f"discovery-scale: idle subscribers, {len(ids)} healthchecked containers, "
            f"{idle_seconds:.0f} s"
        )
        condition = f"{len(ids)} healthchecked ({health_interval:g} s)"
        result["idle"][condition] = await _idle(peers, len(ids), idle_seconds, run_id)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await watcher.events.stop()
        await watcher.close()
        await close_peers(peers)
        await engine.remove(ids)
    return result


async def _sync_all(peers: dict[str, Peer], n: int, repeats: int) -> dict[str, Any]:
    """Each subscriber in turn (never two at once): ``repeats`` fresh initial syncs."""
    answers = {}
    for impl, peer in peers.items():
        answers[impl] = await peer.request(
            PEER_TIMEOUT * repeats, cmd="sync", expect=n, repeats=repeats, timeout=120
        )
    return answers


async def _idle(
    peers: dict[str, Peer], expect: int, seconds: float, run_id: str
) -> dict[str, Any]:
    """All subscribers idle at once, each in its own process, over one window;
    meanwhile count what the Engine sends a label-filtered event stream."""
    counter = aiodocker.Docker()
    actions: dict[str, int] = {}
    events = counter.events.subscribe(
        filters=json.dumps(
            {
                "type": ["container"],
                "label": [f"{k}={v}" for k, v in selector(run_id).items()],
            }
        )
    )

    async def count() -> None:
        while (event := await events.get()) is not None:
            action = event.get("Action", "").split(":")[0]
            actions[action] = actions.get(action, 0) + 1

    counting = asyncio.create_task(count())
    t0 = time.perf_counter()
    try:
        answers = await asyncio.gather(
            *(
                p.request(
                    seconds + PEER_TIMEOUT,
                    cmd="idle",
                    expect=expect,
                    seconds=seconds,
                    timeout=120,
                )
                for p in peers.values()
            )
        )
    finally:
        elapsed = time.perf_counter() - t0
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
        await counter.events.stop()
        await counter.close()
    out: dict[str, Any] = {}
    for impl, answer in zip(peers, answers, strict=True):
        answer["cpu_percent_of_core"] = 100 * answer["cpu"] / answer["seconds"]
        out[impl] = answer
    out["engine_events"] = {
        "per_second": sum(actions.values()) / elapsed,
        "actions": actions,
    }
    return out
