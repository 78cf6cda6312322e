"""wool-docker benchmarks: start latency, dispatch, discovery latency and scale.

``scripts/bench.sh [--quick] [--repeats N] [--only SECTION[,SECTION]]`` (``python -m
bench.run`` from the repository's root) runs the sections of `SECTIONS`
(bench/README.md says what each measures; the swarm ones need root and the
machine's Engine in no swarm, and run only when named), prints their tables and
targets, writes the raw numbers to ``bench/results/<timestamp>.json`` and the
start-latency chart to ``bench/results/start-latency.png``. Everything created is
labelled ``wool.docker.bench=<run id>`` and removed before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import platform
import signal
import sys
import traceback
import uuid
from datetime import UTC
from datetime import datetime
from typing import Any

from . import common
from . import discovery_bench
from . import feed_bench
from . import reach_bench
from . import report
from . import standby_bench
from . import swarm_latency
from . import swarm_worker_bench
from . import workers

MAX_HEALTH_CHECKS_PER_SECOND = 10
"""Default bound on the scale containers' healthchecks, all together."""

SECTIONS = {
    # name: (measure(run) -> results, tables(results, targets) -> text), in run order;
    # the results go to the key of the name with "_" for "-". The swarm sections
    # are synchronous: they run after the event loop, so that Ctrl-C or SIGTERM
    # unwinds through the two-node swarm's teardown.
    "start": (workers.section_start, workers.start_tables),
    "burst": (workers.section_burst, workers.burst_table),
    "sandbox": (workers.section_sandbox, workers.sandbox_table),
    "standby": (standby_bench.section, standby_bench.tables),
    "dispatch": (workers.section_dispatch, workers.dispatch_table),
    "discovery-latency": (
        discovery_bench.section_latency,
        discovery_bench.latency_table,
    ),
    "discovery-scale": (discovery_bench.section_scale, discovery_bench.scale_tables),
    "reach": (reach_bench.section, reach_bench.tables),
    "feed": (feed_bench.section, feed_bench.tables),
    "swarm": (swarm_latency.section, swarm_latency.tables),
    "swarm-worker": (swarm_worker_bench.section, swarm_worker_bench.tables),
}
CHOICES = [*list(SECTIONS)[:9], "baseline", "swarm", "swarm-worker"]
DEFAULT_SECTIONS = CHOICES[:10]
"""What runs without ``--only``: the swarm sections need root and build a swarm
on the machine's Engine, so they run only when asked for."""

PLAN: dict[str, tuple[Any, Any]] = {
    # name: (full run, --quick)
    "start_sizes": ([1, 4, 8], [1, 8]),
    "start_repeats": (5, 1),
    "burst_sizes": ([4, 8], [4, 8]),
    "burst_repeats": (5, 2),
    "sandbox_sizes": ([1, 8], [1, 8]),
    "sandbox_burst": (4, 4),
    "reach_sizes": ([1, 8], [1, 8]),
    "dispatch_pool": (4, 4),
    "dispatch_sequential": (500, 100),
    "dispatch_total": (2000, 400),
    "dispatch_concurrency": (32, 16),
    "kills": (100, 12),
    "keep": (4, 2),
    "lanes": (4, 3),
    "hold": (0.25, 0.25),
    "scale_sizes": ([50, 100, 200], [20]),
    "scale_repeats": (5, 2),
    "idle_seconds": (60.0, 10.0),
    "swarm_intervals": ([1.0, 5.0], [1.0]),
    "swarm_kills": ([24, 24], [4]),
    "swarm_on_node": (8, 4),
    "swarm_worker_sizes": ([1, 4], [1, 4]),
    "swarm_worker_repeats": (5, 2),
    "swarm_worker_deaths": (5, 2),
    "swarm_step": (4, 2),
    "swarm_idle_seconds": (60.0, 10.0),
    "standby_pool": (8, 8),
    "standby_burst": (4, 4),
    "standby_claims": (20, 10),
    "standby_repeats": (5, 2),
    "standby_serving": (4, 2),
    "standby_idle_window": (20.0, 10.0),
}


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
        help=f"comma-separated sections: {', '.join(CHOICES)} (default: all but swarm)",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        help="healthcheck interval (s) of the discovery-scale containers; default "
        f"max(1, N/{MAX_HEALTH_CHECKS_PER_SECOND})",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.only if s not in CHOICES]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {CHOICES}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def plan(args: argparse.Namespace) -> dict[str, Any]:
    out = {name: values[args.quick] for name, values in PLAN.items()}
    if args.repeats is not None:
        for name in ("start", "scale", "burst", "standby"):
            out[f"{name}_repeats"] = args.repeats
    # A `true` healthcheck costs the Engine ~20 ms of CPU (measured here: 20
    # containers checking every second kept 0.4 of a core busy), so 200
    # containers at 1 s would saturate a 2-core machine. Bound the total rate.
    out["health_interval"] = args.health_interval or max(
        1.0, max(out["scale_sizes"]) / MAX_HEALTH_CHECKS_PER_SECOND
    )
    return out


def machine() -> dict[str, Any]:
    version = "{{.Server.Version}} API {{.Server.APIVersion}}"
    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "engine": common.cli("version", "--format", version).strip(),
        "storage_driver": common.cli("info", "--format", "{{.Driver}}").strip(),
        "worker_image": common.IMAGE,
        "base_image": common.BASE_IMAGE,
    }


def sections(only: list[str]) -> list[str]:
    """The sections to run, in run order; ``baseline`` runs the discovery ones."""
    wanted = set(only)
    if "baseline" in wanted:
        wanted |= {"discovery-latency", "discovery-scale"}
    return [name for name in SECTIONS if name in wanted]


def begin(name: str, out: dict[str, Any]) -> str:
    """Say that a section begins; the key of its results."""
    common.progress(f"section {name}")
    out["loadavg_before"][name] = os.getloadavg()
    return name.replace("-", "_")


async def bench(run: common.Run, names: list[str], out: dict[str, Any]) -> None:
    run.network = out["network"] = await common.create_network(run.id)
    run.engine = discovery_bench.Engine(run.id, run.network)
    try:
        for name in names:
            if inspect.iscoroutinefunction(SECTIONS[name][0]):
                key = begin(name, out)  # before the measurement: it stamps the load
                out[key] = await SECTIONS[name][0](run)
    finally:
        await run.engine.close()


def render(out: dict[str, Any]) -> str:
    targets: list[dict[str, Any]] = []
    m = out["machine"]
    parts = [
        f"wool-docker bench {out['run_id']} at {out['started']}  "
        f"({m['cpus']} CPUs, load {m['loadavg'][0]:.1f}/{m['loadavg'][1]:.1f} at start, "
        f"Engine {m['engine']}, {m['storage_driver']}, image {m['worker_image']})"
        + ("  [--quick]" if out["quick"] else "")
    ]
    for name, (_, tables) in SECTIONS.items():
        if name.replace("-", "_") in out:
            parts.append(tables(out[name.replace("-", "_")], targets))
    if targets:
        parts.append(report.targets_table(targets))
    out["targets"] = targets
    return "\n\n".join(parts)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run = common.Run(uuid.uuid4().hex[:8], plan(args))
    names = sections(args.only)
    discovery = {"discovery-latency", "discovery-scale"} & {*args.only}
    run.impls = ["native", "public"] if discovery else []
    if "baseline" in args.only:
        run.impls.append("aiodocker")
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out: dict[str, Any] = {
        "run_id": run.id,
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "sections": args.only,
        "machine": machine(),
        "loadavg_before": {},
        "plan": run.plan,
    }
    run.api = out["machine"]["engine"].rsplit(" ", 1)[-1]
    log_path = common.RESULTS_DIR / f"{stamp}.log"
    common.capture_stderr(log_path)
    out["log"] = str(log_path.relative_to(common.REPO_DIR))
    quick = " (quick)" if args.quick else ""
    common.progress(f"run {run.id}: sections {', '.join(args.only)}{quick}")
    # SIGTERM unwinds like Ctrl-C, so the finally below always cleans up.
    signal.signal(signal.SIGTERM, _interrupt)
    failed: BaseException | None = None
    try:
        asyncio.run(bench(run, names, out))
        for name in names:
            if not inspect.iscoroutinefunction(SECTIONS[name][0]):
                key = begin(name, out)
                out[key] = SECTIONS[name][0](run)
    except BaseException as e:  # noqa: BLE001 - report, clean up, then fail
        failed = e
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        removed = common.cleanup(run.id)
        left = [i for ids in common.leftovers(run.id).values() for i in ids]
        out["cleanup"] = {"removed": removed, "left": left}
        out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = render(out) if failed is None else ""
    path = common.RESULTS_DIR / f"{stamp}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    chart = "start" in out and failed is None
    if chart:
        note = (
            f"{out['started']}, {out['machine']['cpus']} CPUs, "
            f"load {out['loadavg_before']['start'][0]:.1f} at start"
            + (", --quick" if args.quick else "")
        )
        report.chart(out["start"], common.RESULTS_DIR / "start-latency.png", note)
    if text:
        print(text)
    print(f"\nraw numbers: {path.relative_to(common.REPO_DIR)}")
    print(f"log (stderr of the run and its processes): {out['log']}")
    if chart:
        print("chart: bench/results/start-latency.png")
    containers = [r for r in removed if r.startswith("container")]
    if containers:
        print(f"cleanup had to remove {len(containers)} container(s) of run {run.id}")
    if left:
        print(f"LEAK: still present after cleanup: {left}", file=common.console())
        return 1
    if failed is not None:
        if isinstance(failed, KeyboardInterrupt):
            return 130
        traceback.print_exception(failed, file=common.console())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
