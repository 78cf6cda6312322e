"""Section ``standby``: a warm standby against cold starts (issue 20): x1 claims,
x8 pool entry against LocalWorker and a cold DockerWorker, the first burst with
each refill policy, and the idle cost of parked containers. Method and targets:
bench/README.md, "Warm standby". Before every measurement every open standby is
filled again (not counted), so no refill of one measurement runs during the next.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import Literal

import aiodocker
import wool

from wool_docker import ContainerFailedError
from wool_docker import Standby

from . import bench_routines
from . import common
from .common import progress
from .report import median
from .report import rfc3339_ns
from .report import spread
from .report import summary
from .report import table
from .report import target
from .workers import BURN_SECONDS
from .workers import START_TIMEOUT
from .workers import Kind
from .workers import measure_burst
from .workers import measure_pool
from .workers import phase_medians
from .workers import start_one
from .workers import stop_all

CLAIM_P50_TARGET = 0.050
"""Seconds: a claim's ``start()`` p50 may take at most this."""

POOL_RATIO_TARGET = 0.5
"""The standby's x8 pool entry -> first result, as a fraction of LocalWorker's."""

BURST_RATIO_TARGET = 1.10
"""The burst with the default refill, as a multiple of the burst without a standby."""

FILL_TIMEOUT = 180.0
"""Seconds a standby may take to fill (several containers park at once)."""

FILL_ATTEMPTS = 3
"""`filled()` raises when a container exits before parking; try again this often."""

LOAD_PERIOD = 5.0
"""Seconds between samples of the machine's load average during the section."""


class StandbyKind(Kind):
    """Workers claimed from a `Standby`; remembers the workers it made."""

    def __init__(self, label: str, run: common.Run, standby: Standby):
        super().__init__("docker", run, label)
        self.standby = standby
        self.made: list[Any] = []

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        self.made.append(self.standby.worker(*tags, **kwargs))
        return self.made[-1]

    def claimed(self) -> int:
        """How many of the workers made since the last call claimed a parked
        container (the others fell back to a fresh one); call while they run.
        A claim's timings are the claim's own laps; a fresh start's begin with
        "check"."""
        made, self.made = self.made, []
        handles = [getattr(w, "_handle", None) for w in made]
        return sum(any(name == "claim" for name, _ in h.timings) for h in handles if h)


def open_standby(run: common.Run, size: int, refill: Literal["release", "claim"]):
    labels = {common.BENCH_LABEL: run.id}
    return Standby(
        common.IMAGE,
        run.network,
        size,
        refill=refill,
        labels=labels,
        name_prefix=f"wdb-{run.id}",
        log_output=False,
    )


async def fill(*standbys: Standby) -> float:
    """Wait until every standby is full; return the seconds it took."""
    t0 = time.perf_counter()
    async with asyncio.timeout(FILL_TIMEOUT):
        for standby in standbys:
            for attempt in range(FILL_ATTEMPTS):
                try:
                    await standby.filled()
                    break
                except ContainerFailedError:
                    if attempt == FILL_ATTEMPTS - 1:
                        raise
    return time.perf_counter() - t0


async def measure_claim(kind: StandbyKind) -> dict[str, Any]:
    """One worker from the standby: ``start()`` and its first RPC; then stop it."""
    worker = kind.worker()
    try:
        record = await start_one(worker)
        claimed = kind.claimed()
    finally:
        await stop_all([worker])
    return {
        "dispatchable": record["started"] - record["t0"],
        "first_rpc": record["dispatchable"] - record["t0"],
        "phases": record["phases"],
        "claimed": claimed,
    }


# Idle cost -----------------------------------------------------------------------


def _memory(stats: dict[str, Any]) -> float:
    """Bytes in use as ``docker stats`` counts them (page cache excluded)."""
    mem = stats["memory_stats"]
    extra = mem.get("stats", {})
    # cgroup v1: total_inactive_file; v2: inactive_file (the CLI's rule).
    cache = extra.get("total_inactive_file", extra.get("inactive_file", 0))
    return float(mem.get("usage", 0)) - float(cache)


def _rss(stats: dict[str, Any]) -> float:
    """Bytes of anonymous memory (the processes' own, no file cache)."""
    extra = stats["memory_stats"].get("stats", {})
    # cgroup v1: total_rss (rss without children); v2: anon.
    return float(extra.get("total_rss", extra.get("rss", extra.get("anon", 0))))


async def measure_idle(kinds: dict[str, list[str]], window: float) -> dict[str, Any]:
    """CPU (share of one core over ``window`` seconds) and memory of every
    container in ``kinds`` (label -> container ids), all in one window."""
    ids = [i for group in kinds.values() for i in group]
    client = aiodocker.Docker()

    async def sample() -> dict[str, dict[str, Any]]:
        async def one(cid: str) -> tuple[str, dict[str, Any]]:
            data = await client.containers.container(cid).stats(stream=False)
            return cid, data[0] if isinstance(data, list) else data

        return dict(await asyncio.gather(*(one(i) for i in ids)))

    try:
        before = await sample()
        # The measurement window: idle containers, nothing to wait for.
        await asyncio.sleep(window)
        after = await sample()
    finally:
        await client.close()
    out: dict[str, Any] = {}
    for label, group in kinds.items():
        out[label] = []
        for cid in group:
            a, b = before[cid], after[cid]
            seconds = (rfc3339_ns(b["read"]) - rfc3339_ns(a["read"])) / 1e9
            used = [s["cpu_stats"]["cpu_usage"]["total_usage"] for s in (a, b)]
            out[label].append(
                {
                    "id": cid[:12],
                    "cpu_percent": 100 * (used[1] - used[0]) / 1e9 / seconds,
                    "memory_mib": _memory(b) / 2**20,
                    "memory_mib_before": _memory(a) / 2**20,
                    "rss_mib": _rss(b) / 2**20,
                    "pids": b.get("pids_stats", {}).get("current"),
                    "window_s": seconds,
                }
            )
    return out


# The section ---------------------------------------------------------------------


async def section(run: common.Run) -> dict[str, Any]:
    """Every measurement of the section, with the load average sampled meanwhile."""
    load: list[tuple[float, float, float]] = []

    async def sample_load() -> None:
        while True:
            load.append(os.getloadavg())
            # A sampling period, not a wait for state.
            await asyncio.sleep(LOAD_PERIOD)

    sampler = asyncio.create_task(sample_load())
    try:
        out = await _measure(run, run.plan)
    finally:
        sampler.cancel()
    out["loadavg"] = load
    out["stats"] = _stats(out)
    return out


async def _measure(run: common.Run, plan: dict[str, Any]) -> dict[str, Any]:
    size, burst_n, repeats = (
        plan["standby_pool"],
        plan["standby_burst"],
        plan["standby_repeats"],
    )
    out: dict[str, Any] = {
        "pool": size,
        "burst_n": burst_n,
        "spin_seconds": BURN_SECONDS,
        "claims": plan["standby_claims"],
        "repeats": repeats,
        "fills": [],
    }
    cold = Kind("docker", run)
    async with open_standby(run, size, "release") as standby:
        warm = StandbyKind("standby", run, standby)
        out["first_fill"] = await fill(standby)
        progress(f"standby: {size} parked in {out['first_fill']:.2f}s")

        # Idle cost, in one window: parked containers, containers claimed from
        # the standby and serving (created without the image's healthcheck),
        # and cold DockerWorkers serving (with it).
        serving = [cold.worker() for _ in range(plan["standby_serving"])]
        claimed = [warm.worker() for _ in range(plan["standby_serving"])]
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(w.start() for w in serving + claimed))
            out["idle_claimed"] = warm.claimed()
            claimed_ids = [w._handle.id for w in claimed]  # type: ignore[attr-defined]
            # Claimed containers keep the standby label (labels are fixed at create).
            taken = {i[:12] for i in claimed_ids}
            label = f"label={common.BENCH_LABEL}={run.id}"
            parked = ["--filter", label, "--filter", "label=wool.docker.standby=true"]
            listed = await common.docker("ps", "-q", "--no-trunc", *parked)
            groups = {
                "parked": [i for i in listed.split() if i[:12] not in taken],
                "claimed": claimed_ids,
                "serving": [w._handle.id for w in serving],  # type: ignore[attr-defined]
            }
            out["idle"] = await measure_idle(groups, plan["standby_idle_window"])
        finally:
            await stop_all(serving + claimed)
        progress(
            "standby idle: "
            + ", ".join(
                f"{label} {median([r['memory_mib'] for r in rows]):.1f} MiB "
                f"{median([r['cpu_percent'] for r in rows]):.3f} % CPU"
                for label, rows in out["idle"].items()
            )
        )

        # x1: claims, then pools of one.
        claims: list[dict[str, Any]] = []
        for _ in range(plan["standby_claims"]):
            out["fills"].append(await fill(standby))
            claims.append(await measure_claim(warm))
        out["claim_raw"] = claims
        progress(
            f"standby x1 claim: p50 "
            f"{median([c['dispatchable'] for c in claims]) * 1e3:.1f} ms over "
            f"{len(claims)}, {sum(c['claimed'] for c in claims)} claimed"
        )
        out["pool1_raw"] = []
        for _ in range(repeats):
            out["fills"].append(await fill(standby))
            out["pool1_raw"].append(await measure_pool(warm, 1))

        # xN pool entry -> first result, three kinds interleaved.
        kinds = {"local": Kind("local", run), "cold": cold, "standby": warm}
        out["pool_raw"] = await _interleaved(
            kinds,
            lambda kind: measure_pool(kind, size),
            lambda m: f"{m['first_result']:.2f}s",
            f"x{size} first result",
            [standby],
            out,
        )

    # The burst: two standbys of N, one per refill policy, and no standby.
    async with (
        open_standby(run, burst_n, "release") as release,
        open_standby(run, burst_n, "claim") as claim,
    ):
        both = [release, claim]
        kinds = {
            "cold": cold,
            "release": StandbyKind("release", run, release),
            "claim": StandbyKind("claim", run, claim),
        }
        out["burst_raw"] = await _interleaved(
            kinds,
            lambda kind: measure_burst(kind, burst_n, bench_routines.spin, both),
            lambda m: f"{m['wall']:.2f}s {m['spread']}",
            f"burst x{burst_n}",
            both,
            out,
        )
    return out


async def _interleaved(
    kinds: dict[str, Kind],
    measure: Callable[[Kind], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], str],
    what: str,
    standbys: list[Standby],
    out: dict[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    """One unrecorded warm-up of each kind, then ``repeats`` rounds of them in
    turn; the standbys filled before every measurement."""
    for kind in kinds.values():
        await fill(*standbys)
        await measure(kind)
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in kinds}
    for r in range(out["repeats"]):
        for name, kind in kinds.items():
            out["fills"].append(await fill(*standbys))
            raw[name].append(await measure(kind))
        described = ", ".join(
            f"{name} {describe(runs[-1])}" for name, runs in raw.items()
        )
        progress(f"standby r{r + 1}/{out['repeats']} {what}: {described}")
    return raw


def _stats(out: dict[str, Any]) -> dict[str, Any]:
    claims = out["claim_raw"]

    def claimed(runs: list[dict[str, Any]]) -> int | None:
        return (
            sum(m["claimed"] for m in runs)
            if runs and runs[0]["claimed"] is not None
            else None
        )

    return {
        "claim_dispatchable": summary(c["dispatchable"] for c in claims),
        "claim_first_rpc": summary(c["first_rpc"] for c in claims),
        "claim_phases": phase_medians([{"per_worker": [c]} for c in claims]),
        "claimed": sum(c["claimed"] for c in claims),
        "pool1_first_result": summary(p["first_result"] for p in out["pool1_raw"]),
        "pool1_claimed": sum(p["claimed"] for p in out["pool1_raw"]),
        "pool": {
            name: {
                "first_result": summary(m["first_result"] for m in runs),
                "entered": summary(m["entered"] for m in runs),
                "exit": summary(m["exit"] for m in runs),
                "claimed": claimed(runs),
            }
            for name, runs in out["pool_raw"].items()
        },
        "burst": {
            name: {
                "wall": summary(m["wall"] for m in runs),
                "all_used": sum(m["workers_used"] == out["burst_n"] for m in runs),
                "even": sum(m["spread"] == [2] * out["burst_n"] for m in runs),
                "claimed": claimed(runs),
            }
            for name, runs in out["burst_raw"].items()
        },
        "idle": {
            label: {
                "n": len(rows),
                "memory_mib": summary(r["memory_mib"] for r in rows),
                "rss_mib": summary(r["rss_mib"] for r in rows),
                "cpu_percent": summary(r["cpu_percent"] for r in rows),
                "pids": median([r["pids"] for r in rows if r["pids"] is not None]),
            }
            for label, rows in out["idle"].items()
        },
        "fill": summary(out["fills"]),
        "loadavg_1min": summary(sample[0] for sample in out["loadavg"]),
    }


# Report --------------------------------------------------------------------------


def _ms(s: dict[str, float]) -> str:
    return f"{s['median'] * 1e3:.1f} / {s['p99'] * 1e3:.1f}"


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    st, n, bn = s["stats"], s["pool"], s["burst_n"]
    claim, pool, burst = st["claim_dispatchable"], st["pool"], st["burst"]
    local_med = pool["local"]["first_result"]["median"]
    cold_burst = burst["cold"]["wall"]["median"]
    rows: list[list[Any]] = [
        [
            "x1 claim: start() returned, p50 / p99 ms",
            _ms(claim),
            f"{st['claimed']}/{claim['n']} claimed",
            f"p50 <= {CLAIM_P50_TARGET * 1e3:.0f} ms",
        ],
        [
            "x1 claim: first RPC answered, p50 / p99 ms",
            _ms(st["claim_first_rpc"]),
            "",
            "",
        ],
        [
            "x1 pool entry -> first result, s",
            spread(st["pool1_first_result"]),
            f"{st['pool1_claimed']}/{st['pool1_first_result']['n']} claimed",
            "",
        ],
    ]
    for name, label in (
        ("local", "LocalWorker"),
        ("cold", "DockerWorker, cold"),
        ("standby", "DockerWorker, standby"),
    ):
        p = pool[name]
        note = f"{p['first_result']['median'] / local_med:.2f}x LocalWorker"
        if p["claimed"] is not None:
            note += f", {p['claimed']}/{n * p['first_result']['n']} claimed"
        goal = f"<= {POOL_RATIO_TARGET}x LocalWorker" if name == "standby" else ""
        label = f"x{n} pool entry -> first result, {label}, s"
        rows.append([label, spread(p["first_result"]), note, goal])
    for name, label in (
        ("cold", "no standby (cold)"),
        ("release", 'standby, refill="release"'),
        ("claim", 'standby, refill="claim"'),
    ):
        b = burst[name]
        note = f"{b['wall']['median'] / cold_burst:.3f}x cold"
        note += f", 2 each on all {bn} {b['even']}/{b['wall']['n']}"
        goal = f"<= {BURST_RATIO_TARGET:.2f}x cold" if name == "release" else ""
        label = f"burst x{bn} ({2 * bn} x {s['spin_seconds']} CPU-s), {label}, s"
        rows.append([label, spread(b["wall"]), note, goal])
    for label, name in (
        ("parked", "parked"),
        ("claimed from it, serving idle", "claimed"),
        ("cold DockerWorker, serving idle", "serving"),
    ):
        i = st["idle"][name]
        mem, rss, cpu = i["memory_mib"], i["rss_mib"], i["cpu_percent"]
        value = f"{mem['median']:.1f} / {rss['median']:.1f}, {cpu['median']:.3f}"
        note = f"max {mem['max']:.1f} / {rss['max']:.1f}, {cpu['max']:.3f}; "
        note += f"{i['pids']:.0f} pids"
        note += f"; {s['idle_claimed']} claimed" if name == "claimed" else ""
        rows.append(
            [f"{label} (x{i['n']}): memory / RSS MiB, CPU % of a core", value, note, ""]
        )
    ratio = pool["standby"]["first_result"]["median"] / local_med
    cold_ratio = pool["cold"]["first_result"]["median"] / local_med
    release_ratio = burst["release"]["wall"]["median"] / cold_burst
    claim_ratio = burst["claim"]["wall"]["median"] / cold_burst
    target(
        targets,
        f"standby x1 claim -> dispatchable p50 <= {CLAIM_P50_TARGET * 1e3:.0f} ms",
        f"{claim['median'] * 1e3:.1f} ms (p99 {claim['p99'] * 1e3:.1f})",
        claim["median"] <= CLAIM_P50_TARGET and st["claimed"] == claim["n"],
    )
    target(
        targets,
        f"standby x{n} pool entry -> first result <= {POOL_RATIO_TARGET}x LocalWorker",
        f"{ratio:.2f}x (cold DockerWorker {cold_ratio:.2f}x)",
        ratio <= POOL_RATIO_TARGET,
    )
    target(
        targets,
        f"standby burst x{bn}, refill=release <= {BURST_RATIO_TARGET:.2f}x no standby",
        f"{release_ratio:.3f}x (refill=claim {claim_ratio:.3f}x)",
        release_ratio <= BURST_RATIO_TARGET,
    )
    window = median([r["window_s"] for r in s["idle"]["parked"]])
    title = (
        f"WARM STANDBY (median [min-max] over {s['repeats']} interleaved repeats; "
        f"claims over {claim['n']}; idle over {window:.0f} s; standby filled before "
        f"every measurement, median refill {st['fill']['median']:.2f} s; "
        f"load average (1 min) {spread(st['loadavg_1min'], digits=1)})"
    )
    phases = ", ".join(f"{name} {sec * 1e3:.1f}" for name, sec in st["claim_phases"])
    return table(title, "measure, value, note, target", rows) + (
        f"\nx1 claim, median ms per phase: {phases}"
    )
