"""Section reach (issue 29), on this machine's Engine: workers reached at a
published port against the same workers reached at their container address
(start x1 and x8 until every worker answers an RPC, and sequential dispatch
through a pool of 4), and the Engine reached over ``ssh://`` (an sshd on a
loopback address leading to the machine's socket) against ``unix://`` (start
x1 and x8). Variants interleaved after one unrecorded warm-up each. Method:
bench/README.md."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
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

SSH_TARGET = 0.2
"""Seconds a start over ssh may take beyond the same start over unix://."""

SSH_ADDRESS = "127.0.0.77"
"""The loopback address the benchmark's sshd listens on (port 22)."""

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


async def starts(
    variants: list[Kind], sizes: list[int], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Start xN of each variant, interleaved, after one warm-up each."""
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
            progress(
                f"reach r{r + 1} {v.label}: "
                + ", ".join(f"{k} {vals[-1]:.2f}s" for k, vals in raw[v.label].items())
            )
    return raw


@contextlib.contextmanager
def sshd() -> Iterator[str]:
    """An sshd on `SSH_ADDRESS` leading to this machine's Engine; its address,
    with ``WOOL_DOCKER_SSH_OPTS`` set to reach it."""
    from tests.integration.multinode import start_sshd
    from tests.integration.multinode import stop_sshd

    with tempfile.TemporaryDirectory(prefix="wool-docker-bench-ssh-") as directory:
        process, options = start_sshd(
            Path(directory) / "ssh", SSH_ADDRESS, Path("/var/run/docker.sock")
        )
        before = os.environ.get("WOOL_DOCKER_SSH_OPTS")
        os.environ["WOOL_DOCKER_SSH_OPTS"] = options
        try:
            yield f"ssh://root@{SSH_ADDRESS}"
        finally:
            if before is None:
                del os.environ["WOOL_DOCKER_SSH_OPTS"]
            else:
                os.environ["WOOL_DOCKER_SSH_OPTS"] = before
            stop_sshd(process)


async def section(run: common.Run) -> dict[str, Any]:
    sizes, repeats = run.plan["reach_sizes"], max(3, run.plan["start_repeats"])
    calls = run.plan["dispatch_sequential"]
    variants = [
        Kind("docker", run, "container", publish=False),
        Kind("docker", run, "published", publish=True),
    ]
    raw = await starts(variants, sizes, repeats)
    with sshd() as host:
        # The feed is bind-mounted from this machine, so an ssh:// Engine's
        # workers have none: neither kind gets one, to compare like with like.
        transports = [
            Kind("docker", run, "unix", engine_access="none"),
            Kind("docker", run, "ssh", docker_host=host, engine_access="none"),
        ]
        over = await starts(transports, sizes, repeats)
    for v in variants:
        latencies = await dispatch_latencies(v, calls)
        raw[v.label]["dispatch p50"] = [median(latencies)]
        raw[v.label]["dispatch"] = latencies
        progress(f"reach dispatch {v.label}: p50 {median(latencies) * 1e3:.2f} ms")
    raw.update(over)
    stats = {
        label: {k: summary(vals) for k, vals in cases.items()}
        for label, cases in raw.items()
    }
    return {"repeats": repeats, "calls": calls, "raw": raw, "stats": stats}


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    return "\n\n".join([published_table(s, targets), ssh_table(s, targets)])


def ssh_table(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for case, values in s["raw"]["ssh"].items():
        mine, theirs = s["stats"]["ssh"][case], s["stats"]["unix"][case]
        extra = median(values) - median(s["raw"]["unix"][case])
        rows.append([case, spread(mine), spread(theirs), f"{extra:+.3f}"])
        name = f"reach {case}: ssh:// <= unix:// + {SSH_TARGET:.1f} s"
        target(targets, name, f"{extra:+.3f} s", extra <= SSH_TARGET)
    return table(
        f"SSH:// vs UNIX:// TO THIS MACHINE'S ENGINE (median [p10-p90] seconds over "
        f"{s['repeats']} interleaved repeats, until every worker answers an RPC; "
        "engine_access='none' for both)",
        "case, ssh://, unix://, ssh - unix",
        rows,
    )


def published_table(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for case, values in s["raw"]["published"].items():
        if case == "dispatch":
            continue
        mine, theirs = s["stats"]["published"][case], s["stats"]["container"][case]
        ratio = median(values) / median(s["raw"]["container"][case])
        if case == "dispatch p50":
            mine, theirs = (f"{median(s['raw'][k]['dispatch']) * 1e3:.2f} ms"
                            for k in ("published", "container"))  # fmt: skip
        else:
            mine, theirs = spread(mine), spread(theirs)
        rows.append([case, mine, theirs, f"{ratio:.3f}"])
        name = f"reach {case}: published <= {TARGET:.2f}x container address"
        target(targets, name, f"{ratio:.3f}x", ratio <= TARGET)
    return table(
        f"PUBLISHED PORT vs CONTAINER ADDRESS (median [p10-p90] seconds; start: "
        f"{s['repeats']} interleaved repeats until every worker answers an RPC; "
        f"dispatch: p50 of {s['calls']} sequential calls through a pool of {POOL})",
        "case, published, container address, published/container",
        rows,
    )
