"""Section feed (issue 29), on this machine's Engine: the worker feed
bind-mounted into each container against the same feed carried by a relay in
each container (what an owner gets where the Engine shares no files with it:
a remote or ``ssh://`` Engine, an owner in a container, rootless Docker),
forced here with ``WOOL_DOCKER_FEED_RELAY=1``. Start x1 and x8 until every
worker answers an RPC, and nested round trips (a routine that awaits a
routine from inside its worker) through a pool of 4. Variants interleaved
after one unrecorded warm-up each. Method: bench/README.md."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import wool

from . import bench_routines
from . import common
from .common import progress
from .report import median
from .report import summary
from .workers import POOL_TIMEOUT
from .workers import Kind
from .workers import compare
from .workers import ratio_table
from .workers import round_trips

TARGET = 1.10
"""The relay may take at most this much of the bind mount's median."""

POOL = 4
"""Workers of the nested-dispatch pool."""

RELAY = "WOOL_DOCKER_FEED_RELAY"
"""The variable that makes every worker start carry the feed by relay."""


class FeedKind(Kind):
    """`DockerWorker`s with default keywords, whose feed goes one way."""

    def __init__(self, run: common.Run, relay: bool):
        super().__init__("docker", run, "relay" if relay else "mount")
        self.relay = relay

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        # Read when the worker starts, which follows at once; the variants
        # never run at the same time.
        if self.relay:
            os.environ[RELAY] = "1"
        else:
            os.environ.pop(RELAY, None)
        return super().worker(*tags, **kwargs)


async def nested_latencies(kind: Kind, calls: int) -> list[float]:
    """Sequential nested round trips through a warm pool of `POOL` (each
    worker's own subscription to the feed made first)."""
    async with asyncio.timeout(POOL_TIMEOUT), kind.pool(POOL):
        return await round_trips(POOL, calls, bench_routines.nested_echo)


async def section(run: common.Run) -> dict[str, Any]:
    sizes, repeats = run.plan["reach_sizes"], max(3, run.plan["start_repeats"])
    calls = run.plan["dispatch_sequential"]
    variants = [FeedKind(run, relay=True), FeedKind(run, relay=False)]
    try:
        raw = await compare("feed", variants, sizes, repeats)
        nested = {}
        for v in variants:
            nested[v.label] = await nested_latencies(v, calls)
            # In milliseconds, so that the table's seconds column reads as such.
            p50 = median(nested[v.label]) * 1e3
            raw[v.label]["nested p50 (ms)"] = [p50]
            progress(f"feed nested {v.label}: p50 {p50:.2f} ms")
    finally:
        os.environ.pop(RELAY, None)
    stats = {
        label: {k: summary(vals) for k, vals in cases.items()}
        for label, cases in raw.items()
    }
    return {
        "section": "feed",
        "repeats": repeats,
        "calls": calls,
        "raw": raw,
        "stats": stats,
        "nested": nested,
    }


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    return ratio_table(
        s,
        "relay",
        "mount",
        TARGET,
        targets,
        f"WORKER FEED BY RELAY vs BIND MOUNT (median [p10-p90] over {s['repeats']} "
        "interleaved repeats; start: seconds until every worker answers an RPC; "
        f"nested: p50 of {s['calls']} sequential routines that each await a "
        f"routine from inside their worker, through a pool of {POOL})",
    )
