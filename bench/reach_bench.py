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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import common
from .common import progress
from .report import median
from .report import spread
from .report import summary
from .report import table
from .report import target
from .workers import POOL_TIMEOUT
from .workers import Kind
from .workers import compare
from .workers import ratio_table
from .workers import round_trips

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
        return await round_trips(POOL, calls)


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
        Kind("docker", run, "published", publish=True),
        Kind("docker", run, "container", publish=False),
    ]
    raw = await compare("reach", variants, sizes, repeats)
    with sshd() as host:
        # An ssh:// Engine's workers get the feed through a relay, a unix://
        # one's bind-mounted (section feed compares the two): neither kind
        # gets one here, to compare the transport alone.
        transports = [
            Kind("docker", run, "ssh", docker_host=host, engine_access="none"),
            Kind("docker", run, "unix", engine_access="none"),
        ]
        raw.update(await compare("reach", transports, sizes, repeats))
    dispatch = {}
    for v in variants:
        dispatch[v.label] = await dispatch_latencies(v, calls)
        # In milliseconds, so that the table's seconds column reads as such.
        p50 = median(dispatch[v.label]) * 1e3
        raw[v.label]["dispatch p50 (ms)"] = [p50]
        progress(f"reach dispatch {v.label}: p50 {p50:.2f} ms")
    stats = {
        label: {k: summary(vals) for k, vals in cases.items()}
        for label, cases in raw.items()
    }
    return {
        "section": "reach",
        "repeats": repeats,
        "calls": calls,
        "raw": raw,
        "stats": stats,
        "dispatch": dispatch,
    }


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    published = ratio_table(
        s,
        "published",
        "container",
        TARGET,
        targets,
        f"PUBLISHED PORT vs CONTAINER ADDRESS (median [p10-p90] over {s['repeats']} "
        "interleaved repeats; start: seconds until every worker answers an RPC; "
        f"dispatch: p50 of {s['calls']} sequential calls through a pool of {POOL})",
    )
    rows = []
    for case, values in s["raw"]["ssh"].items():
        mine, theirs = s["stats"]["ssh"][case], s["stats"]["unix"][case]
        extra = median(values) - median(s["raw"]["unix"][case])
        rows.append([case, spread(mine), spread(theirs), f"{extra:+.3f}"])
        name = f"reach {case}: ssh:// <= unix:// + {SSH_TARGET:.1f} s"
        target(targets, name, f"{extra:+.3f} s", extra <= SSH_TARGET)
    ssh = table(
        f"SSH:// vs UNIX:// TO THIS MACHINE'S ENGINE (median [p10-p90] seconds over "
        f"{s['repeats']} interleaved repeats, until every worker answers an RPC; "
        "engine_access='none' for both)",
        "case, ssh, unix, ssh - unix",
        rows,
    )
    return f"{published}\n\n{ssh}"
