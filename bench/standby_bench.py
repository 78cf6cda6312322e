"""Section ``standby``: a warm standby against cold starts (issue 20).

One run, side by side:

- x1 claim: ``standby.worker().start()`` until it returns (dispatchable) and
  until its first RPC answers, over many claims; and a pool of one from the
  standby, entry until the first routine result. Target: claim p50 <= 50 ms.
- x8 pool entry until the first routine result, from a filled standby, against
  ``LocalWorker`` x8 and a cold ``DockerWorker`` x8, interleaved. Target:
  standby <= 0.5x LocalWorker.
- The pool's first burst: 2N CPU-bound routines (`bench_routines.spin`, which
  takes longer when something else uses the cores) gathered once the pool is
  entered, until the last result; cold ``DockerWorker``, standby with
  ``refill="release"`` and with ``refill="claim"``, interleaved. Target: the
  default (release) at most 10 % slower than cold.
- Memory and CPU of parked containers at idle, next to serving idle
  ``DockerWorker`` containers, from the Engine's stats API.

Before every measurement every open standby is filled again (not counted), so
no refill of a previous measurement runs during the next one. Everything is
labelled with the run (``wool.docker.bench=<run id>``) and selected on it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from typing import Literal

import aiodocker
import bench_routines
import wool
from common import BENCH_LABEL
from common import IMAGE
from common import median
from common import rfc3339_ns
from common import summary
from report import spread
from report import table
from workers import POOL_TIMEOUT
from workers import START_TIMEOUT
from workers import Kind
from workers import _phase_medians
from workers import _start_one

from wool_docker import ContainerFailedError
from wool_docker import Standby

CLAIM_P50_TARGET = 0.050
"""Seconds: a claim's ``start()`` p50 may take at most this."""

POOL_RATIO_TARGET = 0.5
"""The standby's x8 pool entry -> first result, as a fraction of LocalWorker's."""

BURST_RATIO_TARGET = 1.10
"""The burst with the default refill, as a multiple of the burst without a standby."""

SPIN_SECONDS = 0.3
"""CPU seconds of each routine of a burst."""

FILL_TIMEOUT = 180.0
"""Seconds a standby may take to fill (several containers park at once)."""

FILL_ATTEMPTS = 3
"""`filled()` raises when a container exits before parking; try again this often."""

STANDBY_LABEL = "wool.docker.standby"


class StandbyKind(Kind):
    """Workers claimed from a `Standby`; remembers the workers it made."""

    def __init__(self, label: str, run_id: str, network: str, standby: Standby):
        super().__init__("docker", run_id, network)
        self.label = label
        self.standby = standby
        self.made: list[Any] = []

    def worker(self, *tags: str, **kwargs: Any) -> wool.Worker:
        worker = self.standby.worker(*tags, **kwargs)
        self.made.append(worker)
        return worker

    def claimed(self) -> int:
        """How many of the workers made since the last call claimed a parked
        container (the others fell back to a fresh one); call while they run."""
        made, self.made = self.made, []
        return sum(_was_claimed(w) for w in made)


def _was_claimed(worker: Any) -> bool:
    # A claim's timings are the claim's own laps; a fresh start's begin with "check".
    handle = getattr(worker, "_handle", None)
    return handle is not None and any(name == "claim" for name, _ in handle.timings)


def open_standby(
    run_id: str, network: str, size: int, refill: Literal["release", "claim"]
) -> Standby:
    return Standby(
        IMAGE,
        network,
        size,
        refill=refill,
        labels={BENCH_LABEL: run_id},
        name_prefix=f"wdb-{run_id}",
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
        record = await _start_one(worker)
        claimed = kind.claimed()
    finally:
        if worker.metadata is not None:
            await worker.stop(grace=5)
    return {
        "dispatchable": record["started"] - record["t0"],
        "first_rpc": record["dispatchable"] - record["t0"],
        "phases": record["phases"],
        "claimed": claimed,
    }


async def measure_first_result(kind: Kind, n: int) -> dict[str, Any]:
    """Pool entry until the first routine result; how many workers were claimed."""
    async with asyncio.timeout(POOL_TIMEOUT):
        t0 = time.perf_counter()
        async with kind.pool(n):
            t1 = time.perf_counter()
            assert await bench_routines.echo(7) == 7
            t2 = time.perf_counter()
            claimed = kind.claimed() if isinstance(kind, StandbyKind) else None
        t3 = time.perf_counter()
    return {
        "first_result": t2 - t0,
        "entered": t1 - t0,
        "exit": t3 - t2,
        "claimed": claimed,
    }


async def measure_burst(kind: Kind, n: int, standbys: list[Standby]) -> dict[str, Any]:
    """Enter a pool of ``n``; time ``2n`` CPU-bound routines gathered at once.

    The standbys' parked counts at the burst's start and end show the refills
    (``claim`` refills during the burst, ``release`` only after the pool).
    """
    async with asyncio.timeout(POOL_TIMEOUT):
        async with kind.pool(n):
            parked0 = [s.parked for s in standbys]
            t0 = time.perf_counter()
            hosts = await asyncio.gather(
                *(bench_routines.spin(SPIN_SECONDS) for _ in range(2 * n))
            )
            wall = time.perf_counter() - t0
            parked1 = [s.parked for s in standbys]
            claimed = kind.claimed() if isinstance(kind, StandbyKind) else None
    return {
        "wall": wall,
        "workers_used": len(set(hosts)),
        # Routines per worker, most first: an uneven spread lengthens the burst.
        "spread": sorted(Counter(hosts).values(), reverse=True),
        "claimed": claimed,
        "parked_at_start": parked0,
        "parked_at_end": parked1,
    }


# Idle cost -------------------------------------------------------------------


def _memory(stats: dict[str, Any]) -> float:
    """Bytes in use as ``docker stats`` counts them (page cache excluded)."""
    mem = stats["memory_stats"]
    usage = float(mem.get("usage", 0))
    extra = mem.get("stats", {})
    # cgroup v1: total_inactive_file; v2: inactive_file (the CLI's rule).
    cache = extra.get("total_inactive_file", extra.get("inactive_file", 0))
    return usage - float(cache)


def _rss(stats: dict[str, Any]) -> float:
    """Bytes of anonymous memory (the processes' own, no file cache)."""
    extra = stats["memory_stats"].get("stats", {})
    # cgroup v1: total_rss (rss without children); v2: anon.
    return float(extra.get("total_rss", extra.get("rss", extra.get("anon", 0))))


async def _sample(client: aiodocker.Docker, ids: list[str]) -> dict[str, dict[str, Any]]:
    async def one(cid: str) -> tuple[str, dict[str, Any]]:
        data = await client.containers.container(cid).stats(stream=False)
        return cid, data[0] if isinstance(data, list) else data

    return dict(await asyncio.gather(*(one(i) for i in ids)))


async def measure_idle(kinds: dict[str, list[str]], window: float) -> dict[str, Any]:
    """CPU (share of one core over ``window`` seconds) and memory of every
    container in ``kinds`` (label -> container ids), all in one window."""
    ids = [i for group in kinds.values() for i in group]
    client = aiodocker.Docker()
    try:
        before = await _sample(client, ids)
        # The measurement window: idle containers, nothing to wait for.
        await asyncio.sleep(window)
        after = await _sample(client, ids)
    finally:
        await client.close()
    out: dict[str, Any] = {}
    for label, group in kinds.items():
        rows = []
        for cid in group:
            a, b = before[cid], after[cid]
            seconds = (rfc3339_ns(b["read"]) - rfc3339_ns(a["read"])) / 1e9
            cpu_ns = (
                b["cpu_stats"]["cpu_usage"]["total_usage"]
                - a["cpu_stats"]["cpu_usage"]["total_usage"]
            )
            rows.append(
                {
                    "id": cid[:12],
                    "cpu_percent": 100 * cpu_ns / 1e9 / seconds,
                    "memory_mib": _memory(b) / 2**20,
                    "memory_mib_before": _memory(a) / 2**20,
                    "rss_mib": _rss(b) / 2**20,
                    "pids": b.get("pids_stats", {}).get("current"),
                    "window_s": seconds,
                }
            )
        out[label] = rows
    return out


async def parked_ids(run_id: str) -> list[str]:
    client = aiodocker.Docker()
    try:
        listed = await client.containers.list(
            filters={"label": [f"{BENCH_LABEL}={run_id}", f"{STANDBY_LABEL}=true"]}
        )
        return [c.id for c in listed]
    finally:
        await client.close()


# The section -------------------------------------------------------------------


LOAD_PERIOD = 5.0
"""Seconds between samples of the machine's load average during the section."""


async def _sample_load(samples: list[tuple[float, float, float]]) -> None:
    """Append the 1/5/15-minute load averages every `LOAD_PERIOD` until cancelled."""
    while True:
        samples.append(os.getloadavg())
        # A sampling period, not a wait for state.
        await asyncio.sleep(LOAD_PERIOD)


async def section(
    run_id: str,
    network: str,
    plan: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Every measurement of the section; ``plan`` holds its sizes and repeats."""
    load: list[tuple[float, float, float]] = []
    sampler = asyncio.create_task(_sample_load(load))
    try:
        out = await _measure(run_id, network, plan, progress)
    finally:
        sampler.cancel()
    out["loadavg"] = load
    out["stats"] = _stats(out)
    return out


async def _measure(
    run_id: str,
    network: str,
    plan: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    size: int = plan["standby_pool"]
    burst_n: int = plan["standby_burst"]
    out: dict[str, Any] = {
        "pool": size,
        "burst_n": burst_n,
        "spin_seconds": SPIN_SECONDS,
        "claims": plan["standby_claims"],
        "repeats": plan["standby_repeats"],
        "fills": [],
    }
    local = Kind("local", run_id, None)
    cold = Kind("docker", run_id, network)
    async with open_standby(run_id, network, size, "release") as standby:
        warm = StandbyKind("standby", run_id, network, standby)
        out["first_fill"] = await fill(standby)
        progress(f"standby: {size} parked in {out['first_fill']:.2f}s")

        # Idle cost, in one window: parked containers, containers claimed from
        # the standby and serving (created without the image's healthcheck),
        # and cold DockerWorkers serving (with it).
        k = plan["standby_serving"]
        serving = [cold.worker() for _ in range(k)]
        claimed = [warm.worker() for _ in range(k)]
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(w.start() for w in serving + claimed))
            out["idle_claimed"] = warm.claimed()
            claimed_ids = [w._handle.id for w in claimed]  # type: ignore[attr-defined]
            # Claimed containers keep the standby label (labels are fixed at create).
            taken = {i[:12] for i in claimed_ids}
            parked = [i for i in await parked_ids(run_id) if i[:12] not in taken]
            out["idle"] = await measure_idle(
                {
                    "parked": parked,
                    "claimed": claimed_ids,
                    "serving": [w._handle.id for w in serving],  # type: ignore[attr-defined]
                },
                plan["standby_idle_window"],
            )
        finally:
            await asyncio.gather(
                *(w.stop(grace=5) for w in serving + claimed if w.metadata is not None),
                return_exceptions=True,
            )
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
        pools1: list[dict[str, Any]] = []
        for _ in range(plan["standby_repeats"]):
            out["fills"].append(await fill(standby))
            pools1.append(await measure_first_result(warm, 1))
        out["pool1_raw"] = pools1

        # xN pool entry -> first result, three kinds interleaved.
        kinds: list[tuple[str, Kind]] = [
            ("local", local),
            ("cold", cold),
            ("standby", warm),
        ]
        for _, kind in kinds:  # warm-up, unrecorded
            await fill(standby)
            await measure_first_result(kind, size)
        pool_raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in kinds}
        for r in range(plan["standby_repeats"]):
            for name, kind in kinds:
                out["fills"].append(await fill(standby))
                m = await measure_first_result(kind, size)
                pool_raw[name].append(m)
            progress(
                f"standby r{r + 1}/{plan['standby_repeats']} x{size} first result: "
                + ", ".join(
                    f"{name} {pool_raw[name][-1]['first_result']:.2f}s"
                    for name, _ in kinds
                )
            )
        out["pool_raw"] = pool_raw

    # The burst: two standbys of N, one per refill policy, and no standby.
    async with (
        open_standby(run_id, network, burst_n, "release") as release,
        open_standby(run_id, network, burst_n, "claim") as claim,
    ):
        both = [release, claim]
        variants: list[tuple[str, Kind]] = [
            ("cold", cold),
            ("release", StandbyKind("release", run_id, network, release)),
            ("claim", StandbyKind("claim", run_id, network, claim)),
        ]
        for _, kind in variants:  # warm-up, unrecorded
            await fill(*both)
            await measure_burst(kind, burst_n, both)
        burst_raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
        for r in range(plan["standby_repeats"]):
            for name, kind in variants:
                out["fills"].append(await fill(*both))
                burst_raw[name].append(await measure_burst(kind, burst_n, both))
            progress(
                f"standby r{r + 1}/{plan['standby_repeats']} burst x{burst_n}: "
                + ", ".join(
                    f"{name} {burst_raw[name][-1]['wall']:.2f}s "
                    f"{burst_raw[name][-1]['spread']}"
                    for name, _ in variants
                )
            )
        out["burst_raw"] = burst_raw
    return out


def _stats(out: dict[str, Any]) -> dict[str, Any]:
    claims = out["claim_raw"]
    return {
        "claim_dispatchable": summary(c["dispatchable"] for c in claims),
        "claim_first_rpc": summary(c["first_rpc"] for c in claims),
        "claim_phases": _phase_medians(claims_as_runs(claims)),
        "claimed": sum(c["claimed"] for c in claims),
        "pool1_first_result": summary(p["first_result"] for p in out["pool1_raw"]),
        "pool1_claimed": sum(p["claimed"] for p in out["pool1_raw"]),
        "pool": {
            name: {
                "first_result": summary(m["first_result"] for m in runs),
                "entered": summary(m["entered"] for m in runs),
                "exit": summary(m["exit"] for m in runs),
                "claimed": (
                    sum(m["claimed"] for m in runs)
                    if runs and runs[0]["claimed"] is not None
                    else None
                ),
            }
            for name, runs in out["pool_raw"].items()
        },
        "burst": {
            name: {
                "wall": summary(m["wall"] for m in runs),
                "all_used": sum(m["workers_used"] == out["burst_n"] for m in runs),
                "even": sum(m["spread"] == [2] * out["burst_n"] for m in runs),
                "claimed": (
                    sum(m["claimed"] for m in runs)
                    if runs and runs[0]["claimed"] is not None
                    else None
                ),
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


def claims_as_runs(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims in `_phase_medians`' shape (runs of workers)."""
    return [{"per_worker": [{"phases": c["phases"]}]} for c in claims]


# Report ------------------------------------------------------------------------


def _ms(s: dict[str, float]) -> str:
    return f"{s['median'] * 1e3:.1f} / {s['p99'] * 1e3:.1f}"


def tables(s: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    st = s["stats"]
    n, bn = s["pool"], s["burst_n"]
    claim = st["claim_dispatchable"]
    pool = st["pool"]
    local_med = pool["local"]["first_result"]["median"]
    ratio = pool["standby"]["first_result"]["median"] / local_med
    cold_med = pool["cold"]["first_result"]["median"]
    burst = st["burst"]
    release_ratio = burst["release"]["wall"]["median"] / burst["cold"]["wall"]["median"]
    claim_ratio = burst["claim"]["wall"]["median"] / burst["cold"]["wall"]["median"]
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
        rows.append(
            [
                f"x{n} pool entry -> first result, {label}, s",
                spread(p["first_result"]),
                note,
                f"<= {POOL_RATIO_TARGET}x LocalWorker" if name == "standby" else "",
            ]
        )
    for name, label in (
        ("cold", "no standby (cold)"),
        ("release", 'standby, refill="release"'),
        ("claim", 'standby, refill="claim"'),
    ):
        b = burst[name]
        note = f"{b['wall']['median'] / burst['cold']['wall']['median']:.3f}x cold"
        note += f", 2 each on all {bn} {b['even']}/{b['wall']['n']}"
        rows.append(
            [
                f"burst x{bn} ({2 * bn} x {s['spin_seconds']} CPU-s), {label}, s",
                spread(b["wall"]),
                note,
                f"<= {BURST_RATIO_TARGET:.2f}x cold" if name == "release" else "",
            ]
        )
    for label, name in (
        ("parked", "parked"),
        ("claimed from it, serving idle", "claimed"),
        ("cold DockerWorker, serving idle", "serving"),
    ):
        i = st["idle"][name]
        rows.append(
            [
                f"{label} (x{i['n']}): memory / RSS MiB, CPU % of a core",
                f"{i['memory_mib']['median']:.1f} / {i['rss_mib']['median']:.1f}, "
                f"{i['cpu_percent']['median']:.3f}",
                f"max {i['memory_mib']['max']:.1f} / {i['rss_mib']['max']:.1f}, "
                f"{i['cpu_percent']['max']:.3f}; {i['pids']:.0f} pids"
                + (f"; {s['idle_claimed']} claimed" if name == "claimed" else ""),
                "",
            ]
        )
    targets += [
        {
            "target": "standby x1 claim -> dispatchable p50 <= "
            f"{CLAIM_P50_TARGET * 1e3:.0f} ms",
            "value": f"{claim['median'] * 1e3:.1f} ms (p99 {claim['p99'] * 1e3:.1f})",
            "ok": claim["median"] <= CLAIM_P50_TARGET and st["claimed"] == claim["n"],
        },
        {
            "target": f"standby x{n} pool entry -> first result <= "
            f"{POOL_RATIO_TARGET}x LocalWorker",
            "value": f"{ratio:.2f}x (cold DockerWorker {cold_med / local_med:.2f}x)",
            "ok": ratio <= POOL_RATIO_TARGET,
        },
        {
            "target": f"standby burst x{bn}, refill=release <= "
            f"{BURST_RATIO_TARGET:.2f}x no standby",
            "value": f"{release_ratio:.3f}x (refill=claim {claim_ratio:.3f}x)",
            "ok": release_ratio <= BURST_RATIO_TARGET,
        },
    ]
    return table(
        f"WARM STANDBY (median [min-max] over {s['repeats']} interleaved repeats; "
        f"claims over {claim['n']}; idle over "
        f"{median([r['window_s'] for r in s['idle']['parked']]):.0f} s; standby "
        f"filled before every measurement, median refill {st['fill']['median']:.2f} s; "
        f"load average (1 min) {spread(st['loadavg_1min'], digits=1)})",
        ["measure", "value", "note", "target"],
        rows,
    ) + _phase_line(st["claim_phases"])


def _phase_line(phases: list[tuple[str, float]]) -> str:
    parts = ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in phases)
    return f"\nx1 claim, median ms per phase: {parts}"
