"""Plain-text tables, target verdicts and the start-latency chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

IDLE_CPU_TARGET = 0.1
"""Percent of one core an idle subscriber may use and still count as ≈ 0."""

EVENT_P99_TARGET_MS = 5.0
SYNC_RATIO_TARGET = 1.2


def table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    """An aligned plain-text table; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        all(_is_number(row[i]) or row[i] in ("", None) for row in rows if i < len(row))
        for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        parts = []
        for i, v in enumerate(values):
            parts.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    out = [title, line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def spread(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """``median [min–max]``."""
    if not s or s.get("n", 0) == 0:
        return "-"
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(s[k] * scale) for k in ("median", "min", "max"))
    return f"{med} [{lo}-{hi}]"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "MISS")


# Sections ------------------------------------------------------------------------


def start_tables(start: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    stats = start["stats"]
    rows = []
    for n in start["sizes"]:
        local, dockr = stats["local"][str(n)], stats["docker"][str(n)]
        if "engine" in stats:
            rows.append(
                [
                    n,
                    "Engine alone: n bare containers",
                    "",
                    spread(stats["engine"][str(n)]),
                    "",
                    "",
                    "(floor: create+start)",
                    "",
                ]
            )
        for metric, label in (
            ("dispatchable", "start() -> dispatchable"),
            ("first_result", "pool entry -> 1st result"),
        ):
            lm, dm = local[metric]["median"], dockr[metric]["median"]
            target, ok = "", None
            if n == 1:
                target = f"<= local+0.6 = {lm + 0.6:.2f}"
                ok = dm <= lm + 0.6
            elif n == 8:
                target = f"<= 1.5x local = {1.5 * lm:.2f}"
                ok = dm <= 1.5 * lm
            if target:
                targets.append(
                    {
                        "target": f"DockerWorker x{n} {label}: {target} s",
                        "value": f"{dm:.2f} s",
                        "ok": ok,
                    }
                )
            rows.append(
                [
                    n,
                    label,
                    spread(local[metric]),
                    spread(dockr[metric]),
                    dm / lm if lm else math.nan,
                    f"+{dm - lm:.2f}",
                    target or "-",
                    verdict(ok) if target else "",
                ]
            )
    out = [
        table(
            f"1. START (seconds; median [min-max] over {start['repeats']} repeats; "
            "n workers started concurrently, time until all are dispatchable)",
            [
                "n",
                "metric",
                "LocalWorker",
                "DockerWorker",
                "ratio",
                "diff",
                "target",
                "verdict",
            ],
            rows,
        )
    ]
    phase_names: list[str] = []
    for n in start["sizes"]:
        for name, _ in stats["docker"][str(n)]["phases"]:
            if name not in phase_names:
                phase_names.append(name)
    rows = []
    for name in phase_names:
        row: list[Any] = [name]
        for n in start["sizes"]:
            row.append(dict(stats["docker"][str(n)]["phases"]).get(name, math.nan))
        rows.append(row)
    totals: list[Any] = ["sum (one worker's start->dispatchable)"]
    for n in start["sizes"]:
        totals.append(sum(s for _, s in stats["docker"][str(n)]["phases"]))
    rows.append(totals)
    local_rows = []
    for n in start["sizes"]:
        local_rows.append(dict(stats["local"][str(n)]["phases"]))
    rows.append(
        [
            "host CPU s per worker, DockerWorker (all processes)",
            *(stats["docker"][str(n)]["host_cpu_per_worker"] for n in start["sizes"]),
        ]
    )
    rows.append(
        [
            "host CPU s per worker, LocalWorker (all processes)",
            *(stats["local"][str(n)]["host_cpu_per_worker"] for n in start["sizes"]),
        ]
    )
    for name in ("start()", "first RPC (idle)"):
        rows.append(
            [f"(LocalWorker {name})", *(r.get(name, math.nan) for r in local_rows)]
        )
    out.append(
        table(
            "   DockerWorker start, per worker: median seconds per phase "
            "(WorkerHandle.timings + Python side + first RPC)",
            ["phase", *(f"x{n}" for n in start["sizes"])],
            rows,
        )
    )
    n = max(start["sizes"])
    rows = []
    for kind in ("docker", "local"):
        cpu = stats[kind][str(n)].get("cpu_by_process_per_worker", {})
        shown = [(k, v) for k, v in cpu.items() if v >= 0.005][:10]
        for name, seconds in shown:
            rows.append(
                ["DockerWorker" if kind == "docker" else "LocalWorker", name, seconds]
            )
    if rows:
        out.append(
            table(
                f"   where the CPU goes while x{n} workers start (CPU seconds per "
                "worker, median; every process on the host, so other load shows)",
                ["workers", "process", "CPU s"],
                rows,
            )
        )
    rows = []
    for n in start["sizes"]:
        rows.append(
            [
                n,
                stats["local"][str(n)]["stop"]["median"],
                stats["docker"][str(n)]["stop"]["median"],
                stats["local"][str(n)]["pool_exit"]["median"],
                stats["docker"][str(n)]["pool_exit"]["median"],
            ]
        )
    out.append(
        table(
            "   teardown (median seconds; not a target)",
            ["n", "local stop", "docker stop", "local pool exit", "docker pool exit"],
            rows,
        )
    )
    return "\n\n".join(out)


def dispatch_table(d: dict[str, Any]) -> str:
    rows = []
    for kind in ("local", "docker"):
        if kind not in d:
            continue
        r = d[kind]
        rows.append(
            [
                "LocalWorker" if kind == "local" else "DockerWorker",
                d["pool_size"],
                r["latency_p50"] * 1e3,
                r["latency_p99"] * 1e3,
                r["throughput"],
            ]
        )
    return table(
        f"2. DISPATCH (echo routine via WorkerPool; {d['sequential_calls']} sequential "
        f"calls for latency; {d['concurrent_calls']} calls, "
        f"{d['concurrency']} concurrent, "
        "for throughput)",
        ["workers", "pool", "p50 ms", "p99 ms", "calls/s"],
        rows,
    )


def burst_table(b: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for n in b["sizes"]:
        local = b["stats"]["local"][str(n)]
        docker = b["stats"]["docker"][str(n)]
        ratio = docker["wall"]["median"] / local["wall"]["median"]
        for kind, s in (("LocalWorker", local), ("DockerWorker", docker)):
            rows.append(
                [
                    kind,
                    n,
                    2 * n,
                    spread(s["wall"]),
                    f"{s['all_used']}/{b['repeats']}",
                    s["min_used"],
                ]
            )
        ok = docker["all_used"] == b["repeats"] and ratio <= 1.15
        targets.append(
            {
                "target": f"burst x{n}: every worker used, wall <= 1.15x LocalWorker",
                "value": f"{docker['all_used']}/{b['repeats']} repeats, {ratio:.2f}x",
                "ok": ok,
            }
        )
    return table(
        f"PARALLEL BURST (fresh pool per repeat; 2N routines of {b['seconds']} s CPU "
        "gathered at entry, wool's default quorum)",
        ["workers", "N", "routines", "wall s", "all N used", "fewest used"],
        rows,
    )


IMPL_NAMES = {
    "native": "native Subscription.next",
    "public": "DockerDiscovery.subscriber",
    "aiodocker": "aiodocker baseline",
}


def latency_table(lat: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    checks = []
    for mode in ("idle", "busy"):
        phase = lat["phases"].get(mode)
        if phase is None:
            continue
        for impl, s in phase["impls"].items():
            target, ok = "", None
            if mode == "idle" and impl == "native":
                ok = s["all_ms"]["p99"] <= EVENT_P99_TARGET_MS
                target = f"p99 <= {EVENT_P99_TARGET_MS:g} ms"
                targets.append(
                    {
                        "target": "event-to-Python p99 <= 5 ms, idle loop (native)",
                        "value": f"{s['all_ms']['p99']:.2f} ms",
                        "ok": ok,
                    }
                )
            if mode == "busy":
                ok = (
                    s["lost"] == 0
                    and not s["flapped"]
                    and not s["unknown_events"]
                    and s["final_exact"]
                )
                target = "0 lost, exactly 1+1, exact set"
                if impl in ("native", "public"):
                    targets.append(
                        {
                            "target": "zero lost events, exact final set, "
                            f"busy loop ({impl})",
                            "value": f"lost {s['lost']}, flapped {len(s['flapped'])}, "
                            f"final exact {s['final_exact']}",
                            "ok": ok,
                        }
                    )
            rows.append(
                [
                    IMPL_NAMES[impl],
                    mode,
                    s["added_ms"]["median"],
                    s["added_ms"]["p99"],
                    s["dropped_ms"]["median"],
                    s["dropped_ms"]["p99"],
                    s["all_ms"]["median"],
                    s["all_ms"]["p99"],
                    s["all_ms"]["max"],
                    s["added_after_start_ms"]["median"],
                    s["lost"],
                    len(s["flapped"]),
                    s["extra_events"] + s["unknown_events"],
                    s["final_exact"],
                    target or "-",
                    verdict(ok) if target else "",
                ]
            )
            if s.get("observed_ms"):
                checks.append(
                    [
                        IMPL_NAMES[impl],
                        mode,
                        s["observed_ms"]["n"],
                        s["observed_ms"]["median"],
                        s["observed_ms"]["p99"],
                        s["observed_mismatches"],
                    ]
                )
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
    out = [
        table(
            title,
            [
                "subscriber",
                "loop",
                "add p50",
                "add p99",
                "drop p50",
                "drop p99",
                "all p50",
                "all p99",
                "max",
                "add-start p50",
                "lost",
                "flapped",
                "extra",
                "final=truth",
                "target",
                "verdict",
            ],
            rows,
        )
    ]
    ready = idle.get("ready_after_start_ms")
    if ready:
        early = sum(
            lat["phases"][m].get("ready_before_start_second", 0) for m in lat["phases"]
        )
        out.append(
            f"   churn containers print their ready line {ready['median']:.1f} ms "
            f"(median; min {ready['min']:.1f}, p99 {ready['p99']:.1f}) after their "
            f"start event; {early} ready line(s) stamped in an earlier whole second "
            "than the start event"
        )
    if checks:
        out.append(
            table(
                "   record['observed_ns'] check (latency computed from the record; "
                "mismatches = observed_ns differing from the Engine's time of the "
                "first add / the drop after the kill)",
                ["subscriber", "loop", "n", "p50 ms", "p99 ms", "mismatches"],
                checks,
            )
        )
    return "\n\n".join(out)


def scale_tables(scale: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    impls = [k for k in next(iter(scale["by_size"].values()), {}) if k in IMPL_NAMES]
    rows = []
    for n in scale["sizes"]:
        by = scale["by_size"].get(str(n))
        if by is None:
            continue
        row: list[Any] = [n, by["floor_ms"]["median"]]
        for impl in impls:
            row += [by[impl]["ms"]["median"], by[impl]["ratio"], by[impl]["cold_ms"]]
        target, ok = "-", None
        if "native" in by:
            ok = by["native"]["ratio"] <= SYNC_RATIO_TARGET
            target = f"native <= {SYNC_RATIO_TARGET:g}x floor"
            targets.append(
                {
                    "target": f"initial sync N={n} <= 1.2x bare HTTP floor (native)",
                    "value": f"{by['native']['ratio']:.2f}x "
                    f"({by['native']['ms']['median']:.1f} vs "
                    f"{by['floor_ms']['median']:.1f} ms)",
                    "ok": ok,
                }
            )
        rows.append([*row, target, verdict(ok) if ok is not None else ""])
    headers = ["N", "floor ms"]
    for impl in impls:
        short = {"native": "native", "public": "public", "aiodocker": "aiodkr"}[impl]
        headers += [f"{short} ms", "x floor", "cold ms"]
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
    for n in scale["sizes"]:
        by = scale["by_size"].get(str(n))
        for impl in impls if by else []:
            rows.append(
                [
                    n,
                    IMPL_NAMES[impl],
                    by[impl]["first_ms"]["median"],
                    by[impl]["ms"]["median"],
                    by[impl]["ms"]["median"] - by[impl]["first_ms"]["median"],
                    by[impl]["cpu_ms"]["median"],
                ]
            )
    out.append(
        table(
            "   where the sync goes (medians, ms): subscribe -> first worker-added "
            "(connect, network check, list), first -> last worker-added (delivery), "
            "CPU of the subscriber process during the sync",
            ["N", "subscriber", "first", "all", "first->last", "CPU"],
            rows,
        )
    )
    rows = []
    for condition, by_impl in scale["idle"].items():
        engine = by_impl.get("engine_events", {})
        if engine:
            top = sorted(engine["actions"].items(), key=lambda kv: -kv[1])[:3]
            condition = f"{condition}: {engine['per_second']:.0f} ev/s" + (
                f" ({', '.join(a for a, _ in top)})" if top else ""
            )
        for impl, s in by_impl.items():
            if impl not in IMPL_NAMES:
                continue
            ok = s["cpu_percent_of_core"] <= IDLE_CPU_TARGET
            if impl in ("native", "public"):
                targets.append(
                    {
                        "target": "idle subscriber CPU ~ 0 "
                        f"(<= {IDLE_CPU_TARGET:g}% of a core), {condition} ({impl})",
                        "value": f"{s['cpu_percent_of_core']:.3f}%",
                        "ok": ok,
                    }
                )
            rows.append(
                [
                    IMPL_NAMES[impl],
                    condition,
                    s["seconds"],
                    s["cpu"] * 1e3,
                    s["cpu_percent_of_core"],
                    s["rss_kb_before_subscribe"] / 1024,
                    s["rss_kb_start"] / 1024,
                    s["rss_kb_end"] / 1024,
                    s["events_during"],
                    f"<= {IDLE_CPU_TARGET:g}%",
                    verdict(ok),
                ]
            )
    out.append(
        table(
            "   idle subscriber (own process; CPU = user+sys of the whole process "
            "over the window)",
            [
                "subscriber",
                "Engine",
                "window s",
                "CPU ms",
                "% core",
                "RSS MB pre",
                "RSS MB start",
                "RSS MB end",
                "events",
                "target",
                "verdict",
            ],
            rows,
        )
    )
    return "\n\n".join(out)


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = [[t["target"], t["value"], verdict(t["ok"])] for t in targets]
    return table("TARGETS", ["target", "measured", "verdict"], rows)


# Chart ---------------------------------------------------------------------------


def chart(start: dict[str, Any], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = start["sizes"]
    stats = start["stats"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    width = 0.27
    xs = range(len(sizes))
    for ax, metric, title in (
        (axes[0], "dispatchable", "start() -> dispatchable (all n)"),
        (axes[1], "first_result", "pool entry -> first routine result"),
    ):
        for offset, kind, color, label in (
            (-width, "local", "#4c72b0", "LocalWorker"),
            (0.0, "docker", "#dd8452", "DockerWorker"),
            (width, "engine", "#999999", "Engine alone (bare create+start)"),
        ):
            if kind == "engine":
                if "engine" not in stats:
                    continue
                per = [stats["engine"][str(n)] for n in sizes]
            else:
                per = [stats[kind][str(n)][metric] for n in sizes]
            med = [s["median"] for s in per]
            lo = [s["median"] - s["min"] for s in per]
            hi = [s["max"] - s["median"] for s in per]
            bars = ax.bar(
                [x + offset for x in xs],
                med,
                width,
                yerr=[lo, hi],
                capsize=4,
                color=color,
                label=label,
            )
            ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
        ax.set_xticks(list(xs), [f"{n} worker{'s' if n > 1 else ''}" for n in sizes])
        ax.set_ylabel("seconds (median, bars = min..max)")
        ax.set_title(title)
        ax.legend()
    ax = axes[2]
    names: list[str] = []
    for n in sizes:
        for name, _ in stats["docker"][str(n)]["phases"]:
            if name not in names:
                names.append(name)
    bottoms = [0.0] * len(sizes)
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        values = [dict(stats["docker"][str(n)]["phases"]).get(name, 0.0) for n in sizes]
        ax.bar(list(xs), values, 0.6, bottom=bottoms, label=name, color=cmap(i % 10))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_xticks(list(xs), [f"x{n}" for n in sizes])
    ax.set_ylabel("seconds per worker (median per phase)")
    ax.set_title("DockerWorker start: where a worker's time goes")
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"wool-docker start latency - {note}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
