"""wool-docker benchmarks: start latency, dispatch, discovery latency and scale.

Run with ``scripts/bench.sh [--quick] [--repeats N] [--only SECTION[,SECTION]]``.
Sections: start, burst (2N CPU-bound routines gathered at a fresh pool's entry),
sandbox, standby (a warm standby against cold starts, `standby_bench.py`),
dispatch, discovery-latency, discovery-scale, baseline (the
aiodocker subscriber, run on the workloads of discovery-latency and
discovery-scale side by side with wool-docker's), swarm (discovery of the
tasks of another node on a real two-node Swarm, `swarm_latency.py`) and
swarm-worker (`SwarmWorker` against `DockerWorker` on that swarm,
`swarm_worker_bench.py`); the last two need root and the machine's Engine in no
swarm, and run only when named. Prints a table, writes the raw
numbers to ``bench/results/<timestamp>.json`` and the start-latency chart to
``bench/results/start-latency.png``. Everything created is labelled
``wool.docker.bench=<run id>`` and removed before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
import uuid
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import common
import discovery_bench
import report
import sandbox_bench
import standby_bench
import swarm_latency
import swarm_worker_bench
import workers

MAX_HEALTH_CHECKS_PER_SECOND = 10
"""Default bound on the scale containers' healthchecks, all together."""

SECTIONS = [
    "start",
    "burst",
    "sandbox",
    "standby",
    "dispatch",
    "discovery-latency",
    "discovery-scale",
    "baseline",
    "swarm",
    "swarm-worker",
]

DEFAULT_SECTIONS = [s for s in SECTIONS if s not in ("swarm", "swarm-worker")]
"""What runs without ``--only``: the swarm sections need root and build a swarm
on the machine's Engine, so they run only when asked for."""

FULL = {
    "start_sizes": [1, 4, 8],
    "start_repeats": 5,
    "burst_sizes": [4, 8],
    "burst_repeats": 5,
    "dispatch_pool": 4,
    "dispatch_sequential": 500,
    "dispatch_total": 2000,
    "dispatch_concurrency": 32,
    "kills": 100,
    "keep": 4,
    "lanes": 4,
    "hold": 0.25,
    "scale_sizes": [50, 100, 200],
    "scale_repeats": 5,
    "idle_seconds": 60.0,
    "swarm_intervals": [1.0, 5.0],
    "swarm_kills": [24, 24],
    "swarm_on_node": 8,
    "swarm_worker_sizes": [1, 4],
    "swarm_worker_repeats": 5,
    "swarm_worker_deaths": 5,
    "swarm_step": 4,
    "swarm_idle_seconds": 60.0,
    "standby_pool": 8,
    "standby_burst": 4,
    "standby_claims": 20,
    "standby_repeats": 5,
    "standby_serving": 4,
    "standby_idle_window": 20.0,
}
QUICK = {
    "start_sizes": [1, 8],
    "start_repeats": 1,
    "burst_sizes": [4, 8],
    "burst_repeats": 2,
    "dispatch_pool": 4,
    "dispatch_sequential": 100,
    "dispatch_total": 400,
    "dispatch_concurrency": 16,
    "kills": 12,
    "keep": 2,
    "lanes": 3,
    "hold": 0.25,
    "scale_sizes": [20],
    "scale_repeats": 2,
    "idle_seconds": 10.0,
    "swarm_intervals": [1.0],
    "swarm_kills": [4],
    "swarm_on_node": 4,
    "swarm_worker_sizes": [1, 4],
    "swarm_worker_repeats": 2,
    "swarm_worker_deaths": 2,
    "swarm_step": 2,
    "swarm_idle_seconds": 10.0,
    "standby_pool": 8,
    "standby_burst": 4,
    "standby_claims": 10,
    "standby_repeats": 2,
    "standby_serving": 2,
    "standby_idle_window": 10.0,
}


_console = sys.stderr
"""Where progress goes: the terminal's stderr, kept when fd 2 moves to the log."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=_console, flush=True)


def capture_stderr(path: Path) -> None:
    """Send fd 2 (ours and every child's: LocalWorker processes log INFO there,
    subscriber processes their tracebacks) to ``path``; progress stays on the
    terminal."""
    global _console
    path.parent.mkdir(parents=True, exist_ok=True)
    _console = os.fdopen(os.dup(2), "w", buffering=1)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 2)
    os.close(log)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument(
        "--repeats", type=int, help="repeats of start and scale measurements"
    )
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=DEFAULT_SECTIONS,
        help=f"comma-separated sections: {', '.join(SECTIONS)} (default: all but swarm)",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        help="healthcheck interval (s) of the discovery-scale containers; default "
        f"max(1, N/{MAX_HEALTH_CHECKS_PER_SECOND})",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def machine() -> dict[str, Any]:
    def cli(*args: str) -> str:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=60
        ).stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "engine": cli(
            "version", "--format", "{{.Server.Version}} API {{.Server.APIVersion}}"
        ),
        "storage_driver": cli("info", "--format", "{{.Driver}}"),
        "worker_image": common.IMAGE,
        "base_image": common.BASE_IMAGE,
    }


async def bench(args: argparse.Namespace, run_id: str, out: dict[str, Any]) -> None:
    plan = dict(QUICK if args.quick else FULL)
    if args.repeats is not None:
        plan["start_repeats"] = plan["scale_repeats"] = args.repeats
        plan["burst_repeats"] = plan["standby_repeats"] = args.repeats
    # A `true` healthcheck costs the Engine ~20 ms of CPU (measured here: 20
    # containers checking every second kept 0.4 of a core busy), so 200
    # containers at 1 s would saturate a 2-core machine. Bound the total rate.
    plan["health_interval"] = args.health_interval or max(
        1.0, max(plan["scale_sizes"]) / MAX_HEALTH_CHECKS_PER_SECOND
    )
    out["plan"] = plan
    only = set(args.only)
    impls = [
        i
        for i in ("native", "public")
        if only & {"discovery-latency", "discovery-scale"}
    ]
    if "baseline" in only:
        impls.append("aiodocker")
    network = await common.create_network(run_id)
    out["network"] = network
    engine = discovery_bench.Engine(run_id, network)
    try:
        if "start" in only:
            progress("section start")
            out["loadavg_before"]["start"] = os.getloadavg()
            out["start"] = await workers.section_start(
                run_id, network, plan["start_sizes"], plan["start_repeats"], progress
            )
        if "burst" in only:
            progress("section burst")
            out["loadavg_before"]["burst"] = os.getloadavg()
            out["burst"] = await workers.section_burst(
                run_id, network, plan["burst_sizes"], plan["burst_repeats"], progress
            )
        if "sandbox" in only:
            progress("section sandbox")
            out["loadavg_before"]["sandbox"] = os.getloadavg()
            out["sandbox"] = await sandbox_bench.section(
                run_id,
                network,
                [1, 8],
                4,
                max(3, plan["start_repeats"]),
                progress,
            )
        if "standby" in only:
            progress("section standby")
            out["loadavg_before"]["standby"] = os.getloadavg()
            out["standby"] = await standby_bench.section(run_id, network, plan, progress)
            out["loadavg_after"] = {"standby": os.getloadavg()}
        if "dispatch" in only:
            progress("section dispatch")
            out["loadavg_before"]["dispatch"] = os.getloadavg()
            out["dispatch"] = await workers.section_dispatch(
                run_id,
                network,
                plan["dispatch_pool"],
                plan["dispatch_sequential"],
                plan["dispatch_total"],
                plan["dispatch_concurrency"],
                progress,
            )
        if only & {"discovery-latency", "baseline"}:
            progress(f"section discovery-latency ({', '.join(impls)})")
            out["loadavg_before"]["discovery-latency"] = os.getloadavg()
            out["discovery_latency"] = await discovery_bench.section_latency(
                engine,
                impls,
                plan["kills"],
                plan["keep"],
                plan["lanes"],
                plan["hold"],
                progress,
            )
        if only & {"discovery-scale", "baseline"}:
            progress(f"section discovery-scale ({', '.join(impls)})")
            out["loadavg_before"]["discovery-scale"] = os.getloadavg()
            api = out["machine"]["engine"].rsplit(" ", 1)[-1]
            out["discovery_scale"] = await discovery_bench.section_scale(
                engine,
                impls,
                plan["scale_sizes"],
                plan["scale_repeats"],
                plan["idle_seconds"],
                api,
                plan["health_interval"],
                progress,
            )
    finally:
        await engine.close()


def render(out: dict[str, Any]) -> str:
    targets: list[dict[str, Any]] = []
    m = out["machine"]
    parts = [
        f"wool-docker bench {out['run_id']} at {out['started']}  "
        f"({m['cpus']} CPUs, load {m['loadavg'][0]:.1f}/{m['loadavg'][1]:.1f} at start, "
        f"Engine {m['engine']}, {m['storage_driver']}, image {m['worker_image']})"
        + ("  [--quick]" if out["quick"] else "")
    ]
    if "start" in out:
        parts.append(report.start_tables(out["start"], targets))
    if "burst" in out:
        parts.append(report.burst_table(out["burst"], targets))
    if "sandbox" in out:
        parts.append(sandbox_bench.tables(out["sandbox"], targets))
    if "standby" in out:
        parts.append(standby_bench.tables(out["standby"], targets))
    if "dispatch" in out:
        parts.append(report.dispatch_table(out["dispatch"]))
    if "discovery_latency" in out:
        parts.append(report.latency_table(out["discovery_latency"], targets))
    if "discovery_scale" in out:
        parts.append(report.scale_tables(out["discovery_scale"], targets))
    if "swarm" in out:
        parts.append(swarm_latency.tables(out["swarm"], targets))
    if "swarm_worker" in out:
        parts.append(swarm_worker_bench.tables(out["swarm_worker"], targets))
    if targets:
        parts.append(report.targets_table(targets))
    out["targets"] = targets
    return "\n\n".join(parts)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run_id = uuid.uuid4().hex[:8]
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out: dict[str, Any] = {
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "sections": args.only,
        "machine": machine(),
        "loadavg_before": {},
    }
    log_path = common.RESULTS_DIR / f"{stamp}.log"
    capture_stderr(log_path)
    out["log"] = str(log_path.relative_to(common.BENCH_DIR.parent))
    quick = " (quick)" if args.quick else ""
    progress(f"run {run_id}: sections {', '.join(args.only)}{quick}")
    # SIGTERM unwinds like Ctrl-C, so the finally below always cleans up.
    signal.signal(signal.SIGTERM, _interrupt)
    failed: BaseException | None = None
    try:
        asyncio.run(bench(args, run_id, out))
        if "swarm" in args.only:
            # Synchronous and outside the event loop, so that Ctrl-C or SIGTERM
            # unwinds through the two-node swarm's teardown.
            plan = out["plan"]
            progress("section swarm")
            out["loadavg_before"]["swarm"] = os.getloadavg()
            out["swarm"] = swarm_latency.section(
                run_id,
                plan["swarm_intervals"],
                plan["swarm_kills"],
                plan["swarm_on_node"],
                plan["swarm_step"],
                plan["swarm_idle_seconds"],
                progress,
            )
        if "swarm-worker" in args.only:
            plan = out["plan"]
            progress("section swarm-worker")
            out["loadavg_before"]["swarm-worker"] = os.getloadavg()
            out["swarm_worker"] = swarm_worker_bench.section(
                run_id,
                plan["swarm_worker_sizes"],
                plan["swarm_worker_repeats"],
                plan["swarm_worker_deaths"],
                progress,
            )
    except BaseException as e:  # noqa: BLE001 - report, clean up, then fail
        failed = e
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        removed = common.cleanup(run_id)
        left = common.leftovers(run_id)
        out["cleanup"] = {"removed": removed, "left": left}
        out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = render(out) if failed is None else ""
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / f"{stamp}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    if "start" in out and failed is None:
        note = (
            f"{out['started']}, {out['machine']['cpus']} CPUs, "
            f"load {out['loadavg_before']['start'][0]:.1f} at start"
            + (", --quick" if args.quick else "")
        )
        report.chart(out["start"], common.RESULTS_DIR / "start-latency.png", note)
    if text:
        print(text)
    print(f"\nraw numbers: {path.relative_to(common.BENCH_DIR.parent)}")
    print(f"log (stderr of the run and its processes): {out['log']}")
    if "start" in out and failed is None:
        print("chart: bench/results/start-latency.png")
    containers = [r for r in removed if r.startswith("container")]
    if containers:
        print(f"cleanup had to remove {len(containers)} container(s) of run {run_id}")
    if left:
        print(f"LEAK: still present after cleanup: {left}", file=_console)
        return 1
    if failed is not None:
        if isinstance(failed, KeyboardInterrupt):
            return 130
        traceback.print_exception(failed, file=_console)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
