"""Section reach (issue 29): workers reached at a published port against the
same workers reached at their container address, on this machine's Engine.
Start x1 and x8 until every worker answers an RPC, and sequential dispatch
through a pool of 4; both variants interleaved after one unrecorded warm-up
each. Method: bench/README.md."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import bench_routines
from . import common
from .common import progress
from .report import median
from .report import spread
from .report import summary
from .report import table
from .report import target
from .workers import POOL_TIMEOUT
from .workers import Kind
from .workers import measure_start

TARGET = 1.10
"""Published may take at most this much of the container path's median."""

POOL = 4
"""Workers of the dispatch pool."""


async def dispatch_latencies(kind: Kind, calls: int) -> list[float]:
    """Sequential round trips through a warm pool of `POOL`."""
    async with asyncio.timeout(POOL_TIMEOUT), kind.pool(POOL):
        await asyncio.gather(*(bench_routines.echo(i) for i in range(4 * POOL)))
        latencies = []
        for i in range(calls):
            t0 = time.perf_counter()
            await bench_routines.echo(i)
            latencies.append(time.perf_counter() - t0)
    return latencies


async def section(run: common.Run) -> dict[str, Any]:
    sizes, repeats = run.plan["reach_sizes"], run.plan["start_repeats"]
    calls = run.plan["dispatch_sequential"]
    variants = [
        Kind("docker", run, "container", publish=False),
        Kind("docker", run, "published", publish=True),
    ]
    raw: dict[str, dict[str, list[float]]] = {
        v.label: {f"start x{n}": [] for n in sizes} for v in variants
    }
    for v in variants:
        await measure_start(v, 1)
    for r in range(max(3, repeats)):
        for v in variants:
            for n in sizes:
                m = await measure_start(v, n)
                raw[v.label][f"start x{n}"].append(m["all_dispatchable"])
            progress(
                f"reach r{r + 1} {v.label}: "
                + ", ".join(f"{k} {vals[-1]:.2f}s" for k, vals in raw[v.label].items())
            )
    for v in variants:
        latencies = await dispatch_latencies(v, calls)
        raw[v.label]["dispatch p50"] = [median(latencies)]
        raw[v.label]["dispatch"] = latencies
        progress(f"reach dispatch {v.label}: p50 {median(latencies) * 1e3:.2f} ms")
    stats = {
        label: {k: summary(vals) for k, vals in cases.items()}
        for label, cases in raw.items()
    }
    return {"repeats": max(3, repeats), "calls": calls, "raw": raw, "stats": stats}


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for case, values in s["raw"]["published"].items():
        if case == "dispatch":
            continue
        mine, theirs = s["stats"]["published"][case], s["stats"]["container"][case]
        ratio = median(values) / median(s["raw"]["container"][case])
        rows.append([case, spread(mine), spread(theirs), f"{ratio:.3f}"])
        name = f"reach {case}: published <= {TARGET:.2f}x container address"
        target(targets, name, f"{ratio:.3f}x", ratio <= TARGET)
    return table(
        f"PUBLISHED PORT vs CONTAINER ADDRESS (median [p10-p90] seconds; start: "
        f"{s['repeats']} interleaved repeats until every worker answers an RPC; "
        f"dispatch: p50 of {s['calls']} sequential calls through a pool of {POOL})",
        "case, published, container address, published/container",
        rows,
    )
