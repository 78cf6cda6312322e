"""Sections discovery-latency and discovery-scale, with the aiodocker baseline.

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

from . import common
from .common import BENCH_LABEL
from .common import progress
from .report import median
from .report import summary
from .report import table
from .report import target
from .report import verdict

CREATE_CONCURRENCY = 8
"""Containers created at once when creating in bulk."""

PEER_TIMEOUT = 120.0
"""Seconds a subscriber process may take to answer a simple command."""

IDLE_CPU_TARGET = 0.1
"""Percent of one core an idle subscriber may use and still count as ≈ 0."""

EVENT_P99_TARGET_MS = 5.0
SYNC_RATIO_TARGET = 1.2

IMPL_NAMES = {
    "native": "native Subscription.next",
    "public": "DockerDiscovery.subscriber",
    "aiodocker": "aiodocker baseline",
}

# The Engine's side ---------------------------------------------------------------


class Engine:
    """An aiodocker client for generating workloads and reading the Engine's truth."""

    def __init__(self, run_id: str, network: str):
        self.run_id, self.network = run_id, network
        self.client = aiodocker.Docker()
        self.names = itertools.count()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.events.stop()
        await self.client.close()

    async def run(self, role: str, command: list[str], healthy: float | None = None):
        """Create and start a container; ``healthy``: its healthcheck interval."""
        config: dict[str, Any] = {
            "Image": common.BASE_IMAGE,
            "Cmd": command,
            "Labels": common.container_labels(
                self.run_id, **{f"{BENCH_LABEL}.role": role}
            ),
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
        name = f"wdb-{self.run_id}-{role}-{next(self.names)}"
        async with asyncio.timeout(120):
            return await self.client.containers.run(config, name=name)

    async def ready_ns(self, container: Any, timeout: float = 60.0) -> int:
        """Follow a container's output until its ready line; the line's Engine time."""
        stream = container.log(stdout=True, follow=True, timestamps=True)
        async with asyncio.timeout(timeout):
            if (at := await common.ready_line(stream)) is not None:
                return at
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


class Events:
    """This run's container events of some actions, each handed to ``on``, from a
    client of its own, until closed."""

    def __init__(self, labels: list[str], actions: list[str], on: Callable[[Any], None]):
        self.client = aiodocker.Docker()
        filters = {"type": ["container"], "label": labels} | (
            {"event": actions} if actions else {}
        )
        since = {"since": f"{time.time() - 1:.3f}"} if actions else {}
        stream = self.client.events.subscribe(filters=json.dumps(filters), **since)

        async def read() -> None:
            while (event := await stream.get()) is not None:
                on(event)

        self.task = asyncio.create_task(read())

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.events.stop()
        await self.client.close()


async def spawn_peers(run: common.Run) -> dict[str, common.Peer]:
    args = (run.network, run.id)
    return {i: await common.Peer.spawn(i, "subscriber", i, *args) for i in run.impls}


async def ask(peers: dict[str, common.Peer], deadline: float, **command: Any) -> list:
    """One command to every subscriber at once; their answers in order."""
    return await asyncio.gather(
        *(p.request(deadline, **command) for p in peers.values())
    )


async def close_peers(peers: dict[str, common.Peer]) -> None:
    await asyncio.gather(*(p.close() for p in peers.values()), return_exceptions=True)


# Latency under churn -------------------------------------------------------------


async def churn_phase(run: common.Run, busy: bool) -> dict[str, Any]:
    """Start ``kills + keep`` ready-line containers, ``lanes`` at a time, and kill
    ``kills`` of them, while every subscriber follows in its own process with an
    idle or a busy loop."""
    engine, kills, keep = run.engine, run.plan["kills"], run.plan["keep"]
    mode = "busy" if busy else "idle"
    kill_ns: dict[str, int] = {}
    start_ns: dict[str, int] = {}
    ready_ns: dict[str, int] = {}
    started: list[str] = []
    killed: list[str] = []
    kept: list[str] = []
    kills_seen = asyncio.Event()

    # Our own record of every start's and kill's Engine time, from the Engine's
    # event stream (only this phase's containers are looked up in it).
    def on_event(event: dict[str, Any]) -> None:
        cid, at = event.get("id") or event["Actor"]["ID"], int(event["timeNano"])
        (start_ns if event.get("Action") == "start" else kill_ns).setdefault(cid, at)
        kills_seen.set()

    watch = Events([f"{BENCH_LABEL}={run.id}"], ["kill", "start"], on_event)
    peers = await spawn_peers(run)
    try:
        await ask(peers, PEER_TIMEOUT, cmd="follow", busy=busy)
        # Barrier: every subscriber has seen one container come up.
        sentinel = await engine.run("sentinel", common.READY_COMMAND)
        ready_ns[sentinel.id] = await engine.ready_ns(sentinel)
        started.append(sentinel.id)
        kept.append(sentinel.id)
        barrier = await ask(
            peers,
            PEER_TIMEOUT,
            cmd="await",
            added=[sentinel.id[:32]],
            dropped=[],
            timeout=60,
        )
        for impl, answer in zip(peers, barrier, strict=True):
            if not answer["ok"]:
                raise RuntimeError(f"{impl} never saw the sentinel container")
        progress(f"discovery-latency ({mode} loop): subscribers live; churning")
        order = iter(range(kills + keep))
        t0 = time.perf_counter()

        async def lane() -> None:
            for i in order:
                container = await engine.run(f"churn-{mode}", common.READY_COMMAND)
                started.append(container.id)
                ready_ns[container.id] = await engine.ready_ns(container)
                if i >= kills:
                    kept.append(container.id)
                    continue
                # The container's lifetime: load generation, not a wait for state.
                await asyncio.sleep(run.plan["hold"])
                await container.kill()
                killed.append(container.id)
                await container.delete(force=True, v=True)

        async with asyncio.timeout(60 + 30 * (kills + keep)):
            await asyncio.gather(*(lane() for _ in range(run.plan["lanes"])))
        churn_seconds = time.perf_counter() - t0
        async with asyncio.timeout(60):
            while not all(c in kill_ns for c in killed):
                kills_seen.clear()
                await kills_seen.wait()
        truth = {c[:32] for c in await common.running_ids(run.id, run.network)}
        added, dropped = [c[:32] for c in started], [c[:32] for c in killed]
        answers = await ask(
            peers, PEER_TIMEOUT, cmd="await", added=added, dropped=dropped, timeout=60
        )
        reports = await ask(peers, PEER_TIMEOUT, cmd="report")
    finally:
        await watch.close()
        await close_peers(peers)
        await engine.remove(kept)
    truth_ns = {
        c[:32]: {
            "start": start_ns.get(c, 0),
            "ready": ready_ns[c],
            "kill": kill_ns.get(c) if c in killed else None,
        }
        for c in started
    }
    stamped = [t for t in truth_ns.values() if t["start"]]
    return {
        "loop": mode,
        "started": len(started),
        "killed": len(killed),
        "kept": len(kept),
        "churn_seconds": churn_seconds,
        "truth_final": sorted(truth),
        "impls": {
            impl: _score(report, answer, truth_ns, truth)
            for impl, answer, report in zip(peers, answers, reports, strict=True)
        },
        "ready_after_start_ms": summary(
            (t["ready"] - t["start"]) / 1e6 for t in stamped
        ),
        "ready_before_start_second": sum(
            t["ready"] // 1_000_000_000 < t["start"] // 1_000_000_000 for t in stamped
        ),
        "truth_ns": truth_ns,
    }


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
    mismatched = 0
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
            truth_at = t["ready"]
            added_ms.append((arrival - truth_at) / 1e6)
            if t["start"]:
                added_after_start_ms.append((arrival - t["start"]) / 1e6)
        elif kind == "worker-dropped" and t["kill"] is not None:
            truth_at = t["kill"]
            if len([a for k, a in seq if k == kind and a >= truth_at]) != 1:
                continue
            dropped_ms.append((arrival - truth_at) / 1e6)
        else:
            continue
        if observed:
            observed_ms.append((arrival - observed) / 1e6)
            mismatched += observed != truth_at
    lost_added = [
        c for c, seq in sequences.items() if not any(k == "worker-added" for k, _ in seq)
    ]
    lost_dropped = [
        c
        for c, seq in sequences.items()
        if (kill := truth_ns[c]["kill"]) is not None
        and not any(k == "worker-dropped" and a >= kill for k, a in seq)
    ]
    flapped = {}
    for c, seq in sequences.items():
        kinds = [k for k, _ in seq]
        killed = truth_ns[c]["kill"] is not None
        expected = ["worker-added"] + (["worker-dropped"] if killed else [])
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
        "observed_mismatches": mismatched,
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


async def section_latency(run: common.Run) -> dict[str, Any]:
    progress(f"discovery-latency: {', '.join(run.impls)}")
    phases = {}
    for busy in (False, True):
        phase = await churn_phase(run, busy)
        phases[phase["loop"]] = phase
        for impl, s in phase["impls"].items():
            progress(
                f"discovery-latency {impl} ({phase['loop']} loop): "
                f"p50 {s['all_ms']['median']:.2f} ms, p99 {s['all_ms']['p99']:.2f} ms, "
                f"lost {s['lost']}, final exact {s['final_exact']}"
            )
    plan = run.plan
    return {
        "kills": plan["kills"],
        "keep": plan["keep"],
        "lanes": plan["lanes"],
        "hold_s": plan["hold"],
        "phases": phases,
    }


# Initial sync at scale, idle cost ------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self._path)


def bare_list(api_version: str, run_id: str) -> tuple[float, int]:
    """The floor: ``GET /containers/json?filters=…`` over the Engine's unix socket."""
    labels = [f"{k}={v}" for k, v in common.selector(run_id).items()]
    filters = urllib.parse.quote(json.dumps({"label": labels}))
    t0 = time.perf_counter()
    connection = _UnixHTTPConnection("/var/run/docker.sock")
    try:
        path = f"/v{api_version}/containers/json?filters={filters}"
        connection.request("GET", path, headers={"Host": "docker"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    elapsed = time.perf_counter() - t0
    if response.status != 200:
        raise RuntimeError(f"list failed: {response.status} {body[:200]!r}")
    return elapsed, len(json.loads(body))


async def wait_healthy(
    ids: list[str], healthy: set[str], changed: asyncio.Event, interval: float
) -> None:
    """Wait (bounded) until every id reported healthy, then confirm by inspect."""
    async with asyncio.timeout(120 + 2 * len(ids) + interval):
        while True:
            while not all(c in healthy for c in ids):
                changed.clear()
                await changed.wait()
            out = await common.docker(
                "inspect", "--format", "{{.Id}} {{.State.Health.Status}}", *ids
            )
            states = dict(line.split() for line in out.splitlines() if line.strip())
            unhealthy = [c for c in ids if states.get(c) != "healthy"]
            if not unhealthy:
                return
            healthy.difference_update(unhealthy)


async def section_scale(run: common.Run) -> dict[str, Any]:
    """Initial sync of every subscriber for each size, against the bare list.

    The containers are healthy (a ``true`` healthcheck every ``health_interval``
    seconds), so every subscriber admits them from the listing alone.
    """
    progress(f"discovery-scale: {', '.join(run.impls)}")
    engine, plan = run.engine, run.plan
    interval, idle_seconds = plan["health_interval"], plan["idle_seconds"]
    result: dict[str, Any] = {
        "sizes": plan["scale_sizes"],
        "repeats": plan["scale_repeats"],
        "idle_seconds": idle_seconds,
        "health_interval_s": interval,
        "by_size": {},
        "idle": {},
    }
    peers = await spawn_peers(run)
    ids: list[str] = []
    healthy: set[str] = set()
    changed = asyncio.Event()

    def on_health(event: dict[str, Any]) -> None:
        if event.get("Action", event.get("status", "")).endswith(" healthy"):
            healthy.add(event.get("id") or event["Actor"]["ID"])
            changed.set()

    watch = Events([f"{BENCH_LABEL}={run.id}"], ["health_status"], on_health)
    try:
        # Idle cost with a quiet Engine: a few served workers, nothing changing.
        quiet = [await engine.run("quiet", common.READY_COMMAND) for _ in range(4)]
        for c in quiet:
            await engine.ready_ns(c)
        progress(
            f"discovery-scale: idle subscribers, quiet Engine, {idle_seconds:.0f} s"
        )
        result["idle"]["quiet (4 workers)"] = await _idle(run, peers, len(quiet))
        await engine.remove(c.id for c in quiet)
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create() -> str:
            async with gate:
                return (await engine.run("scale", ["sleep", "infinity"], interval)).id

        for n in plan["scale_sizes"]:
            t0 = time.perf_counter()
            async with asyncio.timeout(600 + 5 * n):
                ids += await asyncio.gather(*(create() for _ in range(n - len(ids))))
            created = time.perf_counter() - t0
            await wait_healthy(ids, healthy, changed, interval)
            progress(
                f"discovery-scale: {n} healthy containers (created in {created:.1f} s, "
                f"healthy after {time.perf_counter() - t0:.1f} s)"
            )
            result["by_size"][str(n)] = by = await _syncs(run, peers, n)
            progress(
                f"discovery-scale N={n}: floor {by['floor_ms']['median']:.1f} ms; "
                + ", ".join(f"{i} {by[i]['ms']['median']:.1f} ms" for i in peers)
            )
        progress(
            f"discovery-scale: idle subscribers, {len(ids)} healthchecked containers, "
            f"{idle_seconds:.0f} s"
        )
        condition = f"{len(ids)} healthchecked ({interval:g} s)"
        result["idle"][condition] = await _idle(run, peers, len(ids))
    finally:
        await watch.close()
        await close_peers(peers)
        await engine.remove(ids)
    return result


async def _syncs(run: common.Run, peers: dict[str, common.Peer], n: int) -> dict:
    """A cold sync of each subscriber (unrecorded: its first connection), then
    ``scale_repeats`` rounds of the bare list and a warm sync of each in turn
    (never two at once)."""

    async def each() -> dict[str, Any]:
        return {
            impl: await peer.request(
                PEER_TIMEOUT, cmd="sync", expect=n, repeats=1, timeout=120
            )
            for impl, peer in peers.items()
        }

    by: dict[str, Any] = {"floor": [], "floor_count": None}
    cold = await each()
    for _ in range(run.plan["scale_repeats"]):
        elapsed, by["floor_count"] = bare_list(run.api, run.id)
        by["floor"].append(elapsed)
        for impl, answer in (await each()).items():
            by.setdefault(impl, {"times": [], "first": [], "cpu": []})
            for key in ("times", "first", "cpu"):
                by[impl][key] += answer[key]
    by["floor_ms"] = summary(t * 1e3 for t in by["floor"])
    for impl in peers:
        s = by[impl]
        for key, name in (("times", "ms"), ("first", "first_ms"), ("cpu", "cpu_ms")):
            s[name] = summary(t * 1e3 for t in s[key])
        s["cold_ms"] = cold[impl]["times"][0] * 1e3
        s["ratio"] = median(s["times"]) / median(by["floor"])
    return by


async def _idle(run: common.Run, peers: dict[str, common.Peer], expect: int) -> dict:
    """All subscribers idle at once, each in its own process, over one window;
    meanwhile count what the Engine sends a label-filtered event stream."""
    seconds = run.plan["idle_seconds"]
    actions: dict[str, int] = {}

    def count(event: dict[str, Any]) -> None:
        action = event.get("Action", "").split(":")[0]
        actions[action] = actions.get(action, 0) + 1

    labels = [f"{k}={v}" for k, v in common.selector(run.id).items()]
    counter = Events(labels, [], count)
    t0 = time.perf_counter()
    try:
        answers = await ask(
            peers,
            seconds + PEER_TIMEOUT,
            cmd="idle",
            expect=expect,
            seconds=seconds,
            timeout=120,
        )
    finally:
        elapsed = time.perf_counter() - t0
        await counter.close()
    out: dict[str, Any] = {}
    for impl, answer in zip(peers, answers, strict=True):
        out[impl] = answer | {
            "cpu_percent_of_core": 100 * answer["cpu"] / answer["seconds"]
        }
    out["engine_events"] = {
        "per_second": sum(actions.values()) / elapsed,
        "actions": actions,
    }
    return out


# Tables --------------------------------------------------------------------------

LATENCY_HEADERS = (
    "subscriber, loop, add p50, add p99, drop p50, drop p99, all p50, all p99, max, "
    "add-start p50, lost, flapped, extra, final=truth, target, verdict"
)


def latency_table(lat: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows, checks = [], []
    for mode in ("idle", "busy"):
        for impl, s in lat["phases"].get(mode, {"impls": {}})["impls"].items():
            goal, ok = "", None
            if mode == "idle" and impl == "native":
                goal = f"p99 <= {EVENT_P99_TARGET_MS:g} ms"
                ok = target(
                    targets,
                    "event-to-Python p99 <= 5 ms, idle loop (native)",
                    f"{s['all_ms']['p99']:.2f} ms",
                    s["all_ms"]["p99"] <= EVENT_P99_TARGET_MS,
                )
            if mode == "busy":
                goal = "0 lost, exactly 1+1, exact set"
                ok = s["lost"] == 0 and not s["flapped"] and not s["unknown_events"]
                ok = ok and s["final_exact"]
                if impl in ("native", "public"):
                    value = f"lost {s['lost']}, flapped {len(s['flapped'])}, "
                    value += f"final exact {s['final_exact']}"
                    name = f"zero lost events, exact final set, busy loop ({impl})"
                    target(targets, name, value, ok)
            ms = [s[k][q] for k in ("added_ms", "dropped_ms") for q in ("median", "p99")]
            ms += [s["all_ms"]["median"], s["all_ms"]["p99"], s["all_ms"]["max"]]
            row = [IMPL_NAMES[impl], mode, *ms, s["added_after_start_ms"]["median"]]
            row += [
                s["lost"],
                len(s["flapped"]),
                s["extra_events"] + s["unknown_events"],
            ]
            rows.append(
                row + [s["final_exact"], goal or "-", verdict(ok) if goal else ""]
            )
            if o := s.get("observed_ms"):
                row = [o["n"], o["median"], o["p99"], s["observed_mismatches"]]
                checks.append([IMPL_NAMES[impl], mode, *row])
    idle = lat["phases"].get("idle", {})
    title = (
        "3. DISCOVERY LATENCY (ms from the Engine's time - ready line's log "
        "timestamp, kill event's timeNano - to time.time_ns() in Python; "
        f"{idle.get('started', '?')} starts, {idle.get('killed', '?')} kills "
        f"per loop mode, {lat['lanes']} at a time, each killed "
        f"{lat['hold_s'] * 1e3:.0f} ms after its ready line; busy = 200 ms CPU "
        "hold every 500 ms; add-start = added arrival after the start event; flapped = "
        "containers whose events were not exactly added(+dropped))"
    )
    out = [table(title, LATENCY_HEADERS, rows)]
    if ready := idle.get("ready_after_start_ms"):
        early = sum(
            p.get("ready_before_start_second", 0) for p in lat["phases"].values()
        )
        out.append(
            f"   churn containers print their ready line {ready['median']:.1f} ms "
            f"(median; min {ready['min']:.1f}, p99 {ready['p99']:.1f}) after their "
            f"start event; {early} ready line(s) stamped in an earlier whole second "
            "than the start event"
        )
    if checks:
        title = (
            "   record['observed_ns'] check (latency computed from the record; "
            "mismatches = observed_ns differing from the Engine's time of the "
            "first add / the drop after the kill)"
        )
        out.append(
            table(title, "subscriber, loop, n, p50 ms, p99 ms, mismatches", checks)
        )
    return "\n\n".join(out)


def scale_tables(scale: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    impls = [k for k in next(iter(scale["by_size"].values()), {}) if k in IMPL_NAMES]
    sizes = [(n, by) for n in scale["sizes"] if (by := scale["by_size"].get(str(n)))]
    rows = []
    for n, by in sizes:
        row: list[Any] = [n, by["floor_ms"]["median"]]
        for impl in impls:
            row += [by[impl]["ms"]["median"], by[impl]["ratio"], by[impl]["cold_ms"]]
        goal, ok = "-", None
        if native := by.get("native"):
            goal = f"native <= {SYNC_RATIO_TARGET:g}x floor"
            value = f"{native['ratio']:.2f}x ({native['ms']['median']:.1f} vs "
            value += f"{by['floor_ms']['median']:.1f} ms)"
            name = f"initial sync N={n} <= 1.2x bare HTTP floor (native)"
            ok = target(targets, name, value, native["ratio"] <= SYNC_RATIO_TARGET)
        rows.append([*row, goal, verdict(ok) if ok is not None else ""])
    short = {"native": "native", "public": "public", "aiodocker": "aiodkr"}
    headers = ["N", "floor ms"]
    for impl in impls:
        headers += [f"{short[impl]} ms", "x floor", "cold ms"]
    out = [
        table(
            f"4. DISCOVERY SCALE: initial sync, subscribe -> all N worker-added "
            f"(median of {scale['repeats']} warm repeats; floor = bare GET "
            "/containers/json?filters over /var/run/docker.sock; cold = first sync "
            "of a fresh process)",
            [*headers, "target", "verdict"],
            rows,
        )
    ]
    rows = []
    for n, by in sizes:
        for impl in impls:
            first, every = by[impl]["first_ms"]["median"], by[impl]["ms"]["median"]
            cpu = by[impl]["cpu_ms"]["median"]
            rows.append([n, IMPL_NAMES[impl], first, every, every - first, cpu])
    title = (
        "   where the sync goes (medians, ms): subscribe -> first worker-added "
        "(connect, network check, list), first -> last worker-added (delivery), "
        "CPU of the subscriber process during the sync"
    )
    out.append(table(title, "N, subscriber, first, all, first->last, CPU", rows))
    rows = []
    for condition, by_impl in scale["idle"].items():
        if engine := by_impl.get("engine_events", {}):
            top = sorted(engine["actions"].items(), key=lambda kv: -kv[1])[:3]
            condition = f"{condition}: {engine['per_second']:.0f} ev/s" + (
                f" ({', '.join(a for a, _ in top)})" if top else ""
            )
        for impl, s in by_impl.items():
            if impl not in IMPL_NAMES:
                continue
            ok = s["cpu_percent_of_core"] <= IDLE_CPU_TARGET
            if impl in ("native", "public"):
                name = f"idle subscriber CPU ~ 0 (<= {IDLE_CPU_TARGET:g}% of a core), "
                name += f"{condition} ({impl})"
                target(targets, name, f"{s['cpu_percent_of_core']:.3f}%", ok)
            row = [IMPL_NAMES[impl], condition, s["seconds"], s["cpu"] * 1e3]
            row.append(s["cpu_percent_of_core"])
            row += [
                s[f"rss_kb_{k}"] / 1024 for k in ("before_subscribe", "start", "end")
            ]
            rows.append(
                row + [s["events_during"], f"<= {IDLE_CPU_TARGET:g}%", verdict(ok)]
            )
    title = (
        "   idle subscriber (own process; CPU = user+sys of the whole process "
        "over the window)"
    )
    headers = "subscriber, Engine, window s, CPU ms, % core, RSS MB pre, RSS MB start"
    headers += ", RSS MB end, events, target, verdict"
    out.append(table(title, headers, rows))
    return "\n\n".join(out)
