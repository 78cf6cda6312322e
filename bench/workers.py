"""Sections start, burst and dispatch (DockerWorker against wool's LocalWorker)
and sandbox (a hardened DockerWorker, every default, against an open one, every
confinement keyword opted out; issue 18). Method: bench/README.md."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import aiodocker
import wool
from wool.runtime.worker.connection import WorkerConnection

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker

from . import bench_routines
from . import common
from .common import progress
from .report import median
from .report import spread
from .report import summary
from .report import table
from .report import target
from .report import verdict

START_TIMEOUT = 120.0
"""Seconds one worker start may take (the machine may be loaded)."""

RPC_TIMEOUT = 30.0
"""Seconds one RPC may take."""

POOL_TIMEOUT = 300.0
"""Seconds one whole pool measurement (entry, call, exit) may take."""

BURN_SECONDS = 0.3
"""CPU seconds of each routine of a burst."""

FIRST_RPC = "first RPC (idle)"
TEARDOWN = ("stop", "pool_exit")

OPEN: dict[str, Any] = {
    "user": None,
    "read_only": False,
    "security_opt": (),
    "pids_limit": None,
    "oom_score_adj": None,
    "ulimits": None,
    "log_config": None,
}
"""The opt-outs that make a worker's container Docker's default one (every
capability but the dropped ones: ``cap_add`` cannot re-add what ``ALL`` took,
so ``open`` still drops them; capabilities cost nothing at start)."""

SANDBOX_TARGET = 1.05
"""Hardened may take at most this much of open's median time."""


class Kind:
    """How to make a worker of one kind (``local`` or ``docker``, with fixed
    keywords), alone and in a pool."""

    def __init__(self, name: str, run: common.Run, label: str = "", **keywords: Any):
        self.name, self.run, self.keywords = name, run, keywords
        self.label = label or name

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        if self.name == "local":
            return wool.LocalWorker(*tags, **kwargs)
        return DockerWorker(
            *tags,
            image=common.IMAGE,
            network=self.run.network,
            labels={common.BENCH_LABEL: self.run.id},
            name_prefix=f"wdb-{self.run.id}",
            log_output=False,
            **self.keywords,
            **kwargs,
        )

    def pool(self, spawn: int) -> wool.WorkerPool:
        if self.name == "local":
            return wool.WorkerPool(spawn=spawn, shutdown_timeout=60)
        discovery = DockerDiscovery(
            network=self.run.network, labels=common.selector(self.run.id)
        )
        return wool.WorkerPool(
            spawn=spawn, worker=self.worker, discovery=discovery, shutdown_timeout=60
        )

    def claimed(self) -> int | None:
        """How many workers came from a standby (see `standby_bench`)."""
        return None


async def start_one(worker: wool.Worker) -> dict[str, Any]:
    """Start one worker and time it until its first RPC answers."""
    t0 = time.perf_counter()
    await worker.start(timeout=START_TIMEOUT)
    t1 = time.perf_counter()
    assert worker.address is not None
    connection = WorkerConnection(worker.address)
    try:
        await connection.idle(timeout=RPC_TIMEOUT)
    finally:
        t2 = time.perf_counter()
        await connection.close()
    handle = getattr(worker, "_handle", None)  # DockerWorker only; private, bench only
    if handle is not None:
        phases = [(name, float(seconds)) for name, seconds in handle.timings]
        rest = max(0.0, (t1 - t0) - sum(s for _, s in phases))
        phases += [("python + future", rest), (FIRST_RPC, t2 - t1)]
    else:
        phases = [("start()", t1 - t0), (FIRST_RPC, t2 - t1)]
    return {"t0": t0, "started": t1, "dispatchable": t2, "phases": phases}


async def stop_all(workers: list[wool.Worker]) -> None:
    async with asyncio.timeout(120):
        await asyncio.gather(
            *(w.stop(grace=5) for w in workers if w.metadata is not None),
            return_exceptions=True,
        )


async def measure_start(kind: Kind, n: int) -> dict[str, Any]:
    """``n`` workers started concurrently: time until every one is dispatchable."""
    workers = [kind.worker() for _ in range(n)]
    procs0, cpu0 = common.process_cpu(), common.host_cpu_seconds()
    try:
        # A TaskGroup cancels the other starts if one fails; a cancelled start
        # removes its container.
        async with asyncio.timeout(START_TIMEOUT + RPC_TIMEOUT):
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(start_one(w)) for w in workers]
        records = [t.result() for t in tasks]
        host_cpu = common.host_cpu_seconds() - cpu0
        ours = {w._handle.id for w in workers if getattr(w, "_handle", None)}
        by_process = common.cpu_by_process(procs0, common.process_cpu(), host_cpu, ours)
    finally:
        t_stop = time.perf_counter()
        await stop_all(workers)
        stop_seconds = time.perf_counter() - t_stop
    origin = min(r["t0"] for r in records)
    return {
        "all_dispatchable": max(r["dispatchable"] for r in records) - origin,
        "all_started": max(r["started"] for r in records) - origin,
        "per_worker": [
            {"dispatchable": r["dispatchable"] - r["t0"], "phases": r["phases"]}
            for r in records
        ],
        "stop": stop_seconds,
        "host_cpu_s": host_cpu,
        "cpu_by_process": by_process,
    }


async def measure_engine_floor(run: common.Run, n: int) -> float:
    """The Engine alone: create and start ``n`` bare containers (the base image,
    ``sleep infinity``) concurrently on the bench network, until every start
    call returned; then remove them."""
    client = aiodocker.Docker()
    config = {
        "Image": common.BASE_IMAGE,
        "Cmd": ["sleep", "infinity"],
        "Labels": {common.BENCH_LABEL: run.id},
        "HostConfig": {"NetworkMode": run.network},
    }
    containers: list[Any] = []

    async def one() -> None:
        containers.append(await client.containers.create(config))
        await containers[-1].start()

    try:
        async with asyncio.timeout(START_TIMEOUT):
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - t0
    finally:
        async with asyncio.timeout(120):
            await asyncio.gather(
                *(c.delete(force=True, v=True) for c in containers),
                return_exceptions=True,
            )
        await client.close()


async def measure_pool(kind: Kind, n: int) -> dict[str, Any]:
    """Pool entry until the first routine result; then the pool's exit."""
    async with asyncio.timeout(POOL_TIMEOUT):
        t0 = time.perf_counter()
        async with kind.pool(n):
            t1 = time.perf_counter()
            assert await bench_routines.echo(7) == 7
            t2 = time.perf_counter()
            claimed = kind.claimed()
        t3 = time.perf_counter()
    return {
        "first_result": t2 - t0,
        "entered": t1 - t0,
        "exit": t3 - t2,
        "claimed": claimed,
    }


async def measure_burst(
    kind: Kind, n: int, routine: Any = bench_routines.burn, standbys: Any = ()
) -> dict[str, Any]:
    """Enter a fresh pool of ``n``, gather ``2n`` CPU-bound routines at once. The
    standbys' parked counts at the burst's start and end show their refills."""
    async with asyncio.timeout(POOL_TIMEOUT), kind.pool(n):
        parked0 = [s.parked for s in standbys]
        t0 = time.perf_counter()
        hosts = await asyncio.gather(*(routine(BURN_SECONDS) for _ in range(2 * n)))
        wall = time.perf_counter() - t0
        parked1 = [s.parked for s in standbys]
        claimed = kind.claimed()
    return {
        "wall": wall,
        "workers_used": len(set(hosts)),
        # Routines per worker, most first: an uneven spread lengthens the burst.
        "spread": sorted(Counter(hosts).values(), reverse=True),
        "claimed": claimed,
        "parked_at_start": parked0,
        "parked_at_end": parked1,
    }


def by_size(kinds: list[Kind], sizes: list[int]) -> dict[str, dict[str, list[Any]]]:
    return {k.name: {str(n): [] for n in sizes} for k in kinds}


async def section_start(run: common.Run) -> dict[str, Any]:
    """Section 1: both kinds, every size, ``repeats`` times, interleaved."""
    sizes, repeats = run.plan["start_sizes"], run.plan["start_repeats"]
    kinds = [Kind("local", run), Kind("docker", run)]
    raw, pool_raw = by_size(kinds, sizes), by_size(kinds, sizes)
    floor: dict[str, list[float]] = {str(n): [] for n in sizes}
    # Warm both paths once (page cache, image layers, imports), unrecorded.
    for kind in kinds:
        await measure_start(kind, 1)
    for r in range(repeats):
        for n in sizes:
            floor[str(n)].append(await measure_engine_floor(run, n))
            for kind in kinds:
                m = await measure_start(kind, n)
                raw[kind.name][str(n)].append(m)
                p = await measure_pool(kind, n)
                pool_raw[kind.name][str(n)].append(p)
                progress(
                    f"start r{r + 1}/{repeats} {kind.name}x{n}: "
                    f"dispatchable {m['all_dispatchable']:.2f}s, "
                    f"pool first result {p['first_result']:.2f}s"
                )
    stats: dict[str, Any] = {"engine": {str(n): summary(floor[str(n)]) for n in sizes}}
    for kind in kinds:
        for n in sizes:
            runs, pools = raw[kind.name][str(n)], pool_raw[kind.name][str(n)]
            stats.setdefault(kind.name, {})[str(n)] = {
                "dispatchable": summary(m["all_dispatchable"] for m in runs),
                "first_result": summary(p["first_result"] for p in pools),
                "pool_exit": summary(p["exit"] for p in pools),
                "stop": summary(m["stop"] for m in runs),
                "phases": phase_medians(runs),
                "host_cpu_per_worker": median([m["host_cpu_s"] / n for m in runs]),
                "cpu_by_process_per_worker": _cpu_medians(runs, n),
            }
    return {
        "sizes": sizes,
        "repeats": repeats,
        "raw": raw,
        "pool_raw": pool_raw,
        "engine_floor_raw": floor,
        "stats": stats,
    }


def _cpu_medians(runs: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Median CPU seconds per worker of every process group, largest first."""
    names = {name for m in runs for name in m["cpu_by_process"]}
    medians = {
        name: median([m["cpu_by_process"].get(name, 0.0) / n for m in runs])
        for name in names
    }
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def phase_medians(runs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Median of every phase over every worker of every repeat, in phase order."""
    values: dict[str, list[float]] = {}
    for m in runs:
        for w in m["per_worker"]:
            for name, seconds in w["phases"]:
                values.setdefault(name, []).append(seconds)
    return [(name, median(v)) for name, v in values.items()]


async def round_trips(
    pool_size: int,
    calls: int,
    routine: Callable[[int], Awaitable[int]] = bench_routines.echo,
) -> list[float]:
    """Seconds of ``calls`` sequential round trips of ``routine`` through the
    entered pool of ``pool_size``, after warming every worker (round robin)."""
    await asyncio.gather(*(routine(i) for i in range(4 * pool_size)))
    latencies = []
    for i in range(calls):
        t0 = time.perf_counter()
        await routine(i)
        latencies.append(time.perf_counter() - t0)
    return latencies


async def section_dispatch(run: common.Run) -> dict[str, Any]:
    """Section 2: round trips through a pool of workers of each kind."""
    plan = run.plan
    pool_size, sequential = plan["dispatch_pool"], plan["dispatch_sequential"]
    total, concurrency = plan["dispatch_total"], plan["dispatch_concurrency"]
    result: dict[str, Any] = {
        "pool_size": pool_size,
        "sequential_calls": sequential,
        "concurrent_calls": total,
        "concurrency": concurrency,
    }
    for kind in (Kind("local", run), Kind("docker", run)):
        async with asyncio.timeout(POOL_TIMEOUT + 600), kind.pool(pool_size):
            latencies = await round_trips(pool_size, sequential)
            remaining = iter(range(total))

            async def lane(calls: Iterator[int]) -> None:
                for i in calls:
                    await bench_routines.echo(i)

            t0 = time.perf_counter()
            await asyncio.gather(*(lane(remaining) for _ in range(concurrency)))
            elapsed = time.perf_counter() - t0
        s = summary(latencies)
        result[kind.name] = {
            "latency": s,
            "latency_p50": s["median"],
            "latency_p99": s["p99"],
            "throughput": total / elapsed,
            "raw_latencies": latencies,
        }
        progress(
            f"dispatch {kind.name}x{pool_size}: p50 "
            f"{s['median'] * 1e3:.2f} ms, {total / elapsed:.0f} calls/s"
        )
    return result


async def section_burst(run: common.Run) -> dict[str, Any]:
    """Parallel burst: a fresh pool of N per repeat, 2N routines gathered at entry,
    both kinds interleaved; wall time of the gather and workers it used."""
    sizes, repeats = run.plan["burst_sizes"], run.plan["burst_repeats"]
    kinds = [Kind("local", run), Kind("docker", run)]
    raw = by_size(kinds, sizes)
    for r in range(repeats):
        for n in sizes:
            for kind in kinds:
                m = await measure_burst(kind, n)
                raw[kind.name][str(n)].append(m)
                progress(
                    f"burst r{r + 1}/{repeats} {kind.name}x{n}: "
                    f"{m['wall']:.2f}s on {m['workers_used']} of {n}"
                )
    stats = {
        kind: {
            n: {
                "wall": summary(m["wall"] for m in runs),
                "all_used": sum(m["workers_used"] == int(n) for m in runs),
                "min_used": min(m["workers_used"] for m in runs),
            }
            for n, runs in by_n.items()
        }
        for kind, by_n in raw.items()
    }
    return {
        "sizes": sizes,
        "repeats": repeats,
        "seconds": BURN_SECONDS,
        "raw": raw,
        "stats": stats,
    }


async def compare(
    section: str, variants: list[Kind], sizes: list[int], repeats: int, burst: int = 0
) -> dict[str, dict[str, list[float]]]:
    """Start x``sizes`` (and a burst of ``burst`` workers, if any) of each
    variant, interleaved ``repeats`` times after one unrecorded warm-up each:
    seconds by variant label and case."""
    raw: dict[str, dict[str, list[float]]] = {
        v.label: {f"start x{n}": [] for n in sizes} for v in variants
    }
    for v in variants:
        await measure_start(v, 1)
    for r in range(repeats):
        for v in variants:
            for n in sizes:
                m = await measure_start(v, n)
                raw[v.label][f"start x{n}"].append(m["all_dispatchable"])
            if burst:
                b = await measure_burst(v, burst)
                raw[v.label].setdefault(f"burst x{burst}", []).append(b["wall"])
            progress(
                f"{section} r{r + 1}/{repeats} {v.label}: "
                + ", ".join(f"{k} {vals[-1]:.2f}s" for k, vals in raw[v.label].items())
            )
    return raw


def ratio_table(
    s: dict[str, Any],
    mine: str,
    theirs: str,
    limit: float,
    targets: list[dict[str, Any]],
    title: str,
) -> str:
    """Variant ``mine`` against ``theirs``, case by case: medians with their
    spread, and a target of ``mine/theirs <= limit`` per case."""
    rows = []
    for case, values in s["raw"][mine].items():
        ratio = median(values) / median(s["raw"][theirs][case])
        stats = s["stats"]
        rows.append([case, spread(stats[mine][case]), spread(stats[theirs][case])])
        rows[-1].append(f"{ratio:.3f}")
        name = f"{s['section']} {case}: {mine} <= {limit:.2f}x {theirs}"
        target(targets, name, f"{ratio:.3f}x", ratio <= limit)
    return table(title, f"case, {mine}, {theirs}, {mine}/{theirs}", rows)


async def section_sandbox(run: common.Run) -> dict[str, Any]:
    """Start x``sandbox_sizes`` and a burst, both variants interleaved after one
    unrecorded warm-up each."""
    sizes, burst = run.plan["sandbox_sizes"], run.plan["sandbox_burst"]
    repeats = max(3, run.plan["start_repeats"])
    variants = [Kind("docker", run, "hardened"), Kind("docker", run, "open", **OPEN)]
    raw = await compare("sandbox", variants, sizes, repeats, burst)
    stats = {
        label: {k: summary(vals) for k, vals in cases.items()}
        for label, cases in raw.items()
    }
    return {"section": "sandbox", "repeats": repeats, "raw": raw, "stats": stats}


# Tables --------------------------------------------------------------------------


def start_tables(start: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    stats, sizes = start["stats"], start["sizes"]
    rows: list[list[Any]] = []
    for n in sizes:
        local, dockr = stats["local"][str(n)], stats["docker"][str(n)]
        if "engine" in stats:
            floor = spread(stats["engine"][str(n)])
            rows.append([n, "Engine alone: n bare containers", "", floor, "", ""])
            rows[-1] += ["(floor: create+start)", ""]
        for metric, label in (
            ("dispatchable", "start() -> dispatchable"),
            ("first_result", "pool entry -> 1st result"),
        ):
            lm, dm = local[metric]["median"], dockr[metric]["median"]
            goal, ok = "", None
            if n == 1:
                goal, ok = f"<= local+0.6 = {lm + 0.6:.2f}", dm <= lm + 0.6
            elif n == 8:
                goal, ok = f"<= 1.5x local = {1.5 * lm:.2f}", dm <= 1.5 * lm
            if goal:
                target(
                    targets, f"DockerWorker x{n} {label}: {goal} s", f"{dm:.2f} s", ok
                )
            row = [n, label, spread(local[metric]), spread(dockr[metric])]
            row += [dm / lm if lm else math.nan, f"+{dm - lm:.2f}"]
            rows.append(row + [goal or "-", verdict(ok) if goal else ""])
    out = [
        table(
            f"1. START (seconds; median [min-max] over {start['repeats']} repeats; "
            "n workers started concurrently, time until all are dispatchable)",
            "n, metric, LocalWorker, DockerWorker, ratio, diff, target, verdict",
            rows,
        )
    ]
    docker = [stats["docker"][str(n)] for n in sizes]
    local = [stats["local"][str(n)] for n in sizes]
    phases = [dict(s["phases"]) for s in docker]
    local_phases = [dict(s["phases"]) for s in local]
    rows = [
        [name, *(p.get(name, math.nan) for p in phases)]
        for name in dict.fromkeys(name for p in phases for name in p)
    ]
    rows += [
        [
            "sum (one worker's start->dispatchable)",
            *(sum(seconds for _, seconds in s["phases"]) for s in docker),
        ],
        [
            "host CPU s per worker, DockerWorker (all processes)",
            *(s["host_cpu_per_worker"] for s in docker),
        ],
        [
            "host CPU s per worker, LocalWorker (all processes)",
            *(s["host_cpu_per_worker"] for s in local),
        ],
    ]
    for name in ("start()", FIRST_RPC):
        rows.append(
            [f"(LocalWorker {name})", *(p.get(name, math.nan) for p in local_phases)]
        )
    out.append(
        table(
            "   DockerWorker start, per worker: median seconds per phase "
            "(WorkerHandle.timings + Python side + first RPC)",
            ["phase", *(f"x{n}" for n in sizes)],
            rows,
        )
    )
    n = max(sizes)
    rows = []
    for kind, label in (("docker", "DockerWorker"), ("local", "LocalWorker")):
        cpu = stats[kind][str(n)].get("cpu_by_process_per_worker", {})
        rows += [[label, k, v] for k, v in cpu.items() if v >= 0.005][:10]
    if rows:
        out.append(
            table(
                f"   where the CPU goes while x{n} workers start (CPU seconds per "
                "worker, median; every process on the host, so other load shows)",
                "workers, process, CPU s",
                rows,
            )
        )
    rows = [
        [
            n,
            *(
                stats[k][str(n)][m]["median"]
                for m in TEARDOWN
                for k in ("local", "docker")
            ),
        ]
        for n in sizes
    ]
    out.append(
        table(
            "   teardown (median seconds; not a target)",
            "n, local stop, docker stop, local pool exit, docker pool exit",
            rows,
        )
    )
    return "\n\n".join(out)


def dispatch_table(d: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = [
        [label, d["pool_size"], r["latency_p50"] * 1e3, r["latency_p99"] * 1e3]
        + [r["throughput"]]
        for kind, label in (("local", "LocalWorker"), ("docker", "DockerWorker"))
        if (r := d.get(kind))
    ]
    return table(
        f"2. DISPATCH (echo routine via WorkerPool; {d['sequential_calls']} sequential "
        f"calls for latency; {d['concurrent_calls']} calls, "
        f"{d['concurrency']} concurrent, for throughput)",
        "workers, pool, p50 ms, p99 ms, calls/s",
        rows,
    )


def burst_table(b: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for n in b["sizes"]:
        local, docker = b["stats"]["local"][str(n)], b["stats"]["docker"][str(n)]
        ratio = docker["wall"]["median"] / local["wall"]["median"]
        for kind, s in (("LocalWorker", local), ("DockerWorker", docker)):
            used = f"{s['all_used']}/{b['repeats']}"
            rows.append([kind, n, 2 * n, spread(s["wall"]), used, s["min_used"]])
        target(
            targets,
            f"burst x{n}: every worker used, wall <= 1.15x LocalWorker",
            f"{docker['all_used']}/{b['repeats']} repeats, {ratio:.2f}x",
            docker["all_used"] == b["repeats"] and ratio <= 1.15,
        )
    return table(
        f"PARALLEL BURST (fresh pool per repeat; 2N routines of {b['seconds']} s CPU "
        "gathered at entry, wool's default quorum)",
        "workers, N, routines, wall s, all N used, fewest used",
        rows,
    )


def sandbox_table(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    """The side-by-side table, and one target per measurement."""
    s.setdefault("section", "sandbox")
    return ratio_table(
        s,
        "hardened",
        "open",
        SANDBOX_TARGET,
        targets,
        f"SANDBOX COST (median [p10-p90] seconds over {s['repeats']} interleaved "
        "repeats; start: until every worker answers an RPC; burst: 2N CPU routines)",
    )
