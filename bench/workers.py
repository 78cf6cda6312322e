"""Sections 1 (start), 2 (dispatch) and the parallel burst: DockerWorker against
wool's LocalWorker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import aiodocker
import bench_routines
import wool
from common import BASE_IMAGE
from common import BENCH_LABEL
from common import IMAGE
from common import cpu_by_process
from common import host_cpu_seconds
from common import median
from common import percentile
from common import process_cpu
from common import selector
from common import summary
from wool.runtime.worker.connection import WorkerConnection

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker

_log = logging.getLogger("bench")

START_TIMEOUT = 120.0
"""Seconds one worker start may take (the machine may be loaded)."""

RPC_TIMEOUT = 30.0
"""Seconds one RPC may take."""

POOL_TIMEOUT = 300.0
"""Seconds one whole pool measurement (entry, call, exit) may take."""

FIRST_RPC = "first RPC (idle)"
PY_OVERHEAD = "python + future"


class Kind:
    """How to make a worker of one kind, alone and in a pool."""

    def __init__(self, name: str, run_id: str, network: str | None):
        self.name = name
        self.run_id = run_id
        self.network = network

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        if self.name == "local":
            return wool.LocalWorker(*tags, **kwargs)
        return DockerWorker(
            *tags,
            image=IMAGE,
            network=self.network,
            labels={BENCH_LABEL: self.run_id},
            name_prefix=f"wdb-{self.run_id}",
            log_output=False,
            **kwargs,
        )

    def pool(self, spawn: int) -> wool.WorkerPool:
        if self.name == "local":
            return wool.WorkerPool(spawn=spawn, shutdown_timeout=60)
        return wool.WorkerPool(
            spawn=spawn,
            worker=self.worker,
            discovery=DockerDiscovery(
                network=self.network, labels=selector(self.run_id)
            ),
            shutdown_timeout=60,
        )


async def _start_one(worker: wool.Worker) -> dict[str, Any]:
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
    record: dict[str, Any] = {"t0": t0, "started": t1, "dispatchable": t2}
    handle = getattr(worker, "_handle", None)  # DockerWorker only; private, bench only
    if handle is not None:
        phases = [(name, float(seconds)) for name, seconds in handle.timings]
        phases.append((PY_OVERHEAD, max(0.0, (t1 - t0) - sum(s for _, s in phases))))
        phases.append((FIRST_RPC, t2 - t1))
        record["phases"] = phases
    else:
        record["phases"] = [("start()", t1 - t0), (FIRST_RPC, t2 - t1)]
    return record


async def measure_start(kind: Kind, n: int) -> dict[str, Any]:
    """``n`` workers started concurrently: time until every one is dispatchable."""
    workers = [kind.worker() for _ in range(n)]
    procs0 = process_cpu()
    cpu0 = host_cpu_seconds()
    try:
        # A TaskGroup cancels the other starts if one fails; a cancelled start
        # removes its container.
        async with asyncio.timeout(START_TIMEOUT + RPC_TIMEOUT):
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(_start_one(w)) for w in workers]
        records = [t.result() for t in tasks]
        host_cpu = host_cpu_seconds() - cpu0
        ours = {w._handle.id for w in workers if getattr(w, "_handle", None)}
        by_process = cpu_by_process(procs0, process_cpu(), host_cpu, ours)
    finally:
        t_stop = time.perf_counter()
        async with asyncio.timeout(120):
            await asyncio.gather(
                *(w.stop(grace=5) for w in workers if w.metadata is not None),
                return_exceptions=True,
            )
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


async def measure_engine_floor(run_id: str, network: str, n: int) -> float:
    """The Engine alone: create and start ``n`` bare containers (the base image,
    ``sleep infinity``) concurrently on the bench network, until every start
    call returned; then remove them."""
    client = aiodocker.Docker()
    config = {
        "Image": BASE_IMAGE,
        "Cmd": ["sleep", "infinity"],
        "Labels": {BENCH_LABEL: run_id},
        "HostConfig": {"NetworkMode": network},
    }
    containers: list[Any] = []

    async def one() -> None:
        container = await client.containers.create(config)
        containers.append(container)
        await container.start()

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
        pool = kind.pool(n)
        async with pool:
            t1 = time.perf_counter()
            assert await bench_routines.echo(7) == 7
            t2 = time.perf_counter()
        t3 = time.perf_counter()
    return {"first_result": t2 - t0, "entered": t1 - t0, "exit": t3 - t2}


async def section_start(
    run_id: str,
    network: str,
    sizes: list[int],
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Section 1: both kinds, every size, ``repeats`` times, interleaved."""
    kinds = [Kind("local", run_id, None), Kind("docker", run_id, network)]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        k.name: {str(n): [] for n in sizes} for k in kinds
    }
    pool_raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        k.name: {str(n): [] for n in sizes} for k in kinds
    }
    floor: dict[str, list[float]] = {str(n): [] for n in sizes}
    # Warm both paths once (page cache, image layers, imports), unrecorded.
    for kind in kinds:
        await measure_start(kind, 1)
    for r in range(repeats):
        for n in sizes:
            floor[str(n)].append(await measure_engine_floor(run_id, network, n))
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
    result: dict[str, Any] = {"sizes": sizes, "repeats": repeats, "raw": raw}
    result["pool_raw"] = pool_raw
    result["engine_floor_raw"] = floor
    stats: dict[str, Any] = {"engine": {str(n): summary(floor[str(n)]) for n in sizes}}
    for kind in kinds:
        for n in sizes:
            runs = raw[kind.name][str(n)]
            pools = pool_raw[kind.name][str(n)]
            stats.setdefault(kind.name, {})[str(n)] = {
                "dispatchable": summary(m["all_dispatchable"] for m in runs),
                "first_result": summary(p["first_result"] for p in pools),
                "pool_exit": summary(p["exit"] for p in pools),
                "stop": summary(m["stop"] for m in runs),
                "phases": _phase_medians(runs),
                "host_cpu_per_worker": median([m["host_cpu_s"] / n for m in runs]),
                "cpu_by_process_per_worker": _cpu_medians(runs, n),
            }
    result["stats"] = stats
    return result


def _cpu_medians(runs: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Median CPU seconds per worker of every process group, largest first."""
    names = {name for m in runs for name in m["cpu_by_process"]}
    medians = {
        name: median([m["cpu_by_process"].get(name, 0.0) / n for m in runs])
        for name in names
    }
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def _phase_medians(runs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Median of every phase over every worker of every repeat, in phase order."""
    order: list[str] = []
    values: dict[str, list[float]] = {}
    for m in runs:
        for w in m["per_worker"]:
            for name, seconds in w["phases"]:
                if name not in values:
                    order.append(name)
                    values[name] = []
                values[name].append(seconds)
    return [(name, median(values[name])) for name in order]


async def section_dispatch(
    run_id: str,
    network: str,
    pool_size: int,
    sequential: int,
    total: int,
    concurrency: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Section 2: round trips through a pool of ``pool_size`` workers of each kind."""
    result: dict[str, Any] = {
        "pool_size": pool_size,
        "sequential_calls": sequential,
        "concurrent_calls": total,
        "concurrency": concurrency,
    }
    for kind in (Kind("local", run_id, None), Kind("docker", run_id, network)):
        async with asyncio.timeout(POOL_TIMEOUT + 600):
            async with kind.pool(pool_size):
                # Warm every worker's channel (round robin) before measuring.
                await asyncio.gather(
                    *(bench_routines.echo(i) for i in range(4 * pool_size))
                )
                latencies = []
                for i in range(sequential):
                    t0 = time.perf_counter()
                    await bench_routines.echo(i)
                    latencies.append(time.perf_counter() - t0)
                remaining = iter(range(total))

                async def lane(calls: Iterator[int]) -> None:
                    for i in calls:
                        await bench_routines.echo(i)

                t0 = time.perf_counter()
                await asyncio.gather(*(lane(remaining) for _ in range(concurrency)))
                elapsed = time.perf_counter() - t0
        result[kind.name] = {
            "latency": summary(latencies),
            "latency_p50": percentile(latencies, 50),
            "latency_p99": percentile(latencies, 99),
            "throughput": total / elapsed,
            "raw_latencies": latencies,
        }
        progress(
            f"dispatch {kind.name}x{pool_size}: p50 "
            f"{percentile(latencies, 50) * 1e3:.2f} ms, {total / elapsed:.0f} calls/s"
        )
    return result


BURN_SECONDS = 0.3
"""CPU seconds of each routine of a burst."""


async def measure_burst(kind: Kind, n: int) -> dict[str, Any]:
    """Enter a fresh pool of ``n``, gather ``2n`` CPU-bound routines at once."""
    async with asyncio.timeout(POOL_TIMEOUT):
        async with kind.pool(n):
            t0 = time.perf_counter()
            hosts = await asyncio.gather(
                *(bench_routines.burn(BURN_SECONDS) for _ in range(2 * n))
            )
            wall = time.perf_counter() - t0
    return {"wall": wall, "workers_used": len(set(hosts))}


async def section_burst(
    run_id: str,
    network: str,
    sizes: list[int],
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Parallel burst: a fresh pool of N per repeat, 2N routines gathered at entry,
    both kinds interleaved; wall time of the gather and workers it used."""
    kinds = [Kind("local", run_id, None), Kind("docker", run_id, network)]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        k.name: {str(n): [] for n in sizes} for k in kinds
    }
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
        kind.name: {
            str(n): {
                "wall": summary(m["wall"] for m in raw[kind.name][str(n)]),
                "all_used": sum(m["workers_used"] == n for m in raw[kind.name][str(n)]),
                "min_used": min(m["workers_used"] for m in raw[kind.name][str(n)]),
            }
            for n in sizes
        }
        for kind in kinds
    }
    return {
        "sizes": sizes,
        "repeats": repeats,
        "seconds": BURN_SECONDS,
        "raw": raw,
        "stats": stats,
    }
