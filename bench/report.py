"""What every section reports with: statistics, aligned tables, target verdicts, the
Engine's timestamps and the start-latency chart."""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile ``p`` (0-100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, median, min, max, p10, p90, p99 of ``values``."""
    v = list(values)
    s: dict[str, float] = {"n": len(v), "median": median(v)}
    s["min"], s["max"] = (min(v), max(v)) if v else (math.nan, math.nan)
    return s | {f"p{p}": percentile(v, p) for p in (10, 90, 99)}


def rfc3339_ns(stamp: str) -> int:
    """``2026-11-29T16:45:01.123456789Z`` → Unix nanoseconds."""
    stamp = stamp.strip()
    if not stamp.endswith("Z"):
        raise ValueError(f"not a UTC timestamp: {stamp!r}")
    whole, _, frac = stamp[:-1].partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


# Tables and targets --------------------------------------------------------------


def table(title: str, headers: str | list[str], rows: list[list[Any]]) -> str:
    """An aligned plain-text table; numbers right-aligned, text left-aligned.
    ``headers``: a list, or one string of them separated by ", "."""
    if isinstance(headers, str):
        headers = headers.split(", ")
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
        return "  ".join(
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i])
            for i, v in enumerate(values)
        ).rstrip()

    out = [title, line(headers), line(["-" * w for w in widths])]
    return "\n".join(out + [line(row) for row in cells])


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def spread(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """``median [min–max]``."""
    if not s or s.get("n", 0) == 0:
        return "-"
    med, lo, hi = (f"{s[k] * scale:.{digits}f}" for k in ("median", "min", "max"))
    return f"{med} [{lo}-{hi}]"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "MISS")


def target(targets: list[dict[str, Any]], name: str, value: str, ok: bool) -> bool:
    """Record one target's measured value and verdict for the TARGETS table."""
    targets.append({"target": name, "value": value, "ok": ok})
    return ok


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = [[t["target"], t["value"], verdict(t["ok"])] for t in targets]
    return table("TARGETS", "target, measured, verdict", rows)


# Chart ---------------------------------------------------------------------------


def chart(start: dict[str, Any], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, stats = start["sizes"], start["stats"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    width, xs = 0.27, range(len(sizes))
    for ax, metric, title in (
        (axes[0], "dispatchable", "start() -> dispatchable (all n)"),
        (axes[1], "first_result", "pool entry -> first routine result"),
    ):
        for offset, kind, color, label in (
            (-width, "local", "#4c72b0", "LocalWorker"),
            (0.0, "docker", "#dd8452", "DockerWorker"),
            (width, "engine", "#999999", "Engine alone (bare create+start)"),
        ):
            if kind not in stats:
                continue
            per = [stats[kind][str(n)] for n in sizes]
            per = per if kind == "engine" else [s[metric] for s in per]
            med = [s["median"] for s in per]
            err = [
                [s["median"] - s["min"] for s in per],
                [s["max"] - s["median"] for s in per],
            ]
            x = [x + offset for x in xs]
            bars = ax.bar(x, med, width, yerr=err, capsize=4, color=color, label=label)
            ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
        ax.set_xticks(list(xs), [f"{n} worker{'s' if n > 1 else ''}" for n in sizes])
        ax.set_ylabel("seconds (median, bars = min..max)")
        ax.set_title(title)
        ax.legend()
    ax = axes[2]
    phases = [dict(stats["docker"][str(n)]["phases"]) for n in sizes]
    bottoms = [0.0] * len(sizes)
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(dict.fromkeys(k for p in phases for k in p)):
        values = [p.get(name, 0.0) for p in phases]
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
