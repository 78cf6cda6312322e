"""Section ``sandbox``: what the default confinement costs (issue 18).

The same measurements as the ``start`` and ``burst`` sections, for two kinds of
`DockerWorker` interleaved in one run: ``hardened`` (every default: user 65532,
no capabilities, no-new-privileges, read-only root with tmpfs, pids, OOM score,
ulimits, ``local`` log driver) and ``open`` (every confinement keyword opted
out: the container Docker gives by default, as before the sandbox). Target:
hardened within 5 % of open, for start x1 and x8 and a burst of 4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wool
from common import median
from common import summary
from report import spread
from report import table
from workers import Kind
from workers import measure_burst
from workers import measure_start

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

TARGET = 1.05
"""Hardened may take at most this much of open's median time."""


class _Variant(Kind):
    """A `DockerWorker` kind with fixed confinement keywords."""

    def __init__(self, label: str, run_id: str, network: str, keywords: dict[str, Any]):
        super().__init__("docker", run_id, network)
        self.label = label
        self.keywords = keywords

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        return super().worker(*tags, **self.keywords, **kwargs)


async def section(
    run_id: str,
    network: str,
    start_sizes: list[int],
    burst_size: int,
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Start x``start_sizes`` and a burst of ``burst_size``, both variants
    interleaved ``repeats`` times after one unrecorded warm-up each."""
    variants = [
        _Variant("hardened", run_id, network, {}),
        _Variant("open", run_id, network, OPEN),
    ]
    raw: dict[str, dict[str, list[float]]] = {
        v.label: {**{f"start x{n}": [] for n in start_sizes}, f"burst x{burst_size}": []}
        for v in variants
    }
    for v in variants:
        await measure_start(v, 1)
    for r in range(repeats):
        for v in variants:
            for n in start_sizes:
                m = await measure_start(v, n)
                raw[v.label][f"start x{n}"].append(m["all_dispatchable"])
            b = await measure_burst(v, burst_size)
            raw[v.label][f"burst x{burst_size}"].append(b["wall"])
            progress(
                f"sandbox r{r + 1}/{repeats} {v.label}: "
                + ", ".join(f"{k} {vals[-1]:.2f}s" for k, vals in raw[v.label].items())
            )
    return {
        "repeats": repeats,
        "raw": raw,
        "stats": {
            label: {k: summary(vals) for k, vals in cases.items()}
            for label, cases in raw.items()
        },
    }


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    """The side-by-side table, and one target per measurement."""
    rows = []
    for case in s["raw"]["hardened"]:
        hardened = s["stats"]["hardened"][case]
        opened = s["stats"]["open"][case]
        ratio = median(s["raw"]["hardened"][case]) / median(s["raw"]["open"][case])
        rows.append([case, spread(hardened), spread(opened), f"{ratio:.3f}"])
        targets.append(
            {
                "target": f"sandbox {case}: hardened <= {TARGET:.2f}x open",
                "value": f"{ratio:.3f}x",
                "ok": ratio <= TARGET,
            }
        )
    return table(
        f"SANDBOX COST (median [p10-p90] seconds over {s['repeats']} interleaved "
        "repeats; start: until every worker answers an RPC; burst: 2N CPU routines)",
        ["case", "hardened (default)", "open (opt-outs)", "hardened/open"],
        rows,
    )
