"""`SwarmWorker` against `DockerWorker` on a real two-node Swarm.

The ``swarm-worker`` section of ``bench/run.py`` (``scripts/bench.sh --only
swarm-worker``; root, the machine's Engine in no swarm). It builds the swarm of
`tests/integration/multinode.py` and runs a pool where a pool that places its
own workers runs: in a container on the overlay on the manager, with the
manager's Engine. In one run, alternating the kinds:

- start → dispatchable: a fresh ``WorkerPool(spawn=N)`` of `SwarmWorker` s or of
  `DockerWorker` s (on the manager), from pool entry to the first routine's
  result, and to every worker having served a call (every task reachable);
- owner death: a process holding 4 `SwarmWorker` s on both nodes is killed
  (SIGKILL to its container), and the time until every task has ended is read
  from the manager's task list.

Inside the container this file runs as ``python3 /bench/swarm_worker_bench.py
pool '<json>'`` (one JSON line per measurement) or ``hold '<json>'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

import wool

if TYPE_CHECKING:
    from multinode import Swarm

START_TIMEOUT: Final[float] = 180.0
"""Seconds a pool may take to serve on a loaded machine."""

GONE_TIMEOUT: Final[float] = 60.0
"""Seconds a dead owner's tasks may take to end before it counts as a failure."""

SERVICE_KIND: Final[str] = "wool.docker.service=worker"


# Inside the container -------------------------------------------------------------


@wool.routine
async def host() -> str:
    """The hostname of the container serving the call."""
    import socket

    return socket.gethostname()


async def _pools(config: dict[str, Any]) -> None:
    from wool_docker import DockerDiscovery
    from wool_docker import DockerWorker
    from wool_docker import SwarmWorker

    kinds = {"docker": DockerWorker, "swarm": SwarmWorker}
    for size in config["sizes"]:
        for repeat in range(config["repeats"]):
            # Alternate which kind goes first, so neither always meets a warm
            # (or a busy) Engine.
            order = ["docker", "swarm"] if repeat % 2 == 0 else ["swarm", "docker"]
            for kind in order:
                made = kinds[kind]

                def worker(*tags: str, made: Any = made, **kw: Any) -> Any:
                    return made(
                        *tags,
                        image=config["image"],
                        network=config["network"],
                        engine_access="none",
                        log_output=False,
                        **kw,
                    )

                begin = time.monotonic()
                pool = wool.WorkerPool(
                    spawn=size,
                    worker=worker,
                    discovery=DockerDiscovery(network=config["network"]),
                    quorum=size,
                )
                async with asyncio.timeout(START_TIMEOUT):
                    async with pool:
                        await host()
                        first = time.monotonic() - begin
                        seen: set[str] = set()
                        while len(seen) < size:
                            seen.update(
                                await asyncio.gather(*(host() for _ in range(size)))
                            )
                        every = time.monotonic() - begin
                        entered = time.monotonic()
                    exited = time.monotonic() - entered
                print(
                    json.dumps(
                        {
                            "kind": kind,
                            "size": size,
                            "first_s": first,
                            "all_s": every,
                            "reached": len(seen),
                            "exit_s": exited,
                        }
                    ),
                    flush=True,
                )


async def _hold(config: dict[str, Any]) -> None:
    from wool_docker import SwarmWorker

    workers = [
        SwarmWorker(image=config["image"], network=config["network"], log_output=False)
        for _ in range(config["count"])
    ]
    async with asyncio.timeout(START_TIMEOUT):
        await asyncio.gather(*(w.start() for w in workers))
    print(json.dumps({"held": [w.node for w in workers]}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await asyncio.gather(*(w.stop() for w in workers))


# On the host ----------------------------------------------------------------------


def _container(swarm: Swarm, run_id: str, name: str, mode: str, config: dict[str, Any]):
    import common

    socket_path = "/var/run/docker.sock"
    config = {"image": swarm.image, "network": swarm.overlay, **config}
    return subprocess.Popen(
        [
            "docker", "run", "--rm", "-i", "--name", name,
            "--label", f"{common.BENCH_LABEL}={run_id}",
            "--network", swarm.overlay,
            "-v", f"{common.BENCH_DIR}:/bench:ro",
            "-v", f"{socket_path}:/var/run/docker.sock",
            "--group-add", str(os.stat(socket_path).st_gid),
            "-e", "DOCKER_HOST=unix:///var/run/docker.sock",
            "-e", "PYTHONDONTWRITEBYTECODE=1",
            "--entrypoint", "python3", swarm.image,
            "/bench/swarm_worker_bench.py", mode, json.dumps(config),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _running_tasks(swarm: Swarm) -> int:
    """Tasks of Swarm workers' services that run, on both nodes."""
    import urllib.parse

    filters = urllib.parse.quote(json.dumps({"label": [SERVICE_KIND]}))
    count = 0
    for service in swarm.manager.get(f"/services?filters={filters}"):
        for task in swarm.manager.tasks(service=service["ID"]):
            if task.get("Status", {}).get("State") in ("starting", "running"):
                count += 1
    return count


def _remove_worker_services(swarm: Swarm) -> None:
    import urllib.parse

    filters = urllib.parse.quote(json.dumps({"label": [SERVICE_KIND]}))
    for service in swarm.manager.get(f"/services?filters={filters}"):
        swarm.manager.run("service", "rm", service["ID"], check=False)


def measure_pools(
    swarm: Swarm,
    run_id: str,
    sizes: list[int],
    repeats: int,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Pool entry → first result and → every worker reached, both kinds."""
    name = f"wdb-{run_id}-swpool"
    process = _container(
        swarm, run_id, name, "pool", {"sizes": sizes, "repeats": repeats}
    )
    rows = []
    assert process.stdout is not None
    for line in process.stdout:
        row = json.loads(line)
        rows.append(row)
        progress(
            f"swarm-worker: {row['kind']} ×{row['size']}: first {row['first_s']:.2f} s, "
            f"all {row['all_s']:.2f} s"
        )
    code = process.wait(timeout=60)
    if code != 0:
        raise RuntimeError(
            f"the bench pool exited {code}: {process.stderr.read()[-2000:]}"
        )
    return rows


def measure_owner_death(
    swarm: Swarm, run_id: str, repeats: int, progress: Callable[[str], None]
) -> list[float]:
    """Owner SIGKILL → every task of its 4 Swarm workers ended, in seconds."""
    from multinode import wait_for

    bounds = []
    for repeat in range(repeats):
        name = f"wdb-{run_id}-swhold{repeat}"
        process = _container(swarm, run_id, name, "hold", {"count": 4})
        assert process.stdout is not None
        held = json.loads(process.stdout.readline() or "{}").get("held")
        if not held:
            process.kill()
            raise RuntimeError(
                f"the holder did not start: {process.stderr.read()[-2000:]}"
            )
        killed = time.monotonic()
        swarm.manager.run("kill", name)
        wait_for(
            lambda: _running_tasks(swarm) == 0 or None,
            timeout=GONE_TIMEOUT,
            what="every task of the killed owner to end",
            interval=0.05,
        )
        bounds.append(time.monotonic() - killed)
        process.wait(timeout=60)
        _remove_worker_services(swarm)
        progress(f"swarm-worker: owner death → tasks ended in {bounds[-1]:.2f} s")
    return bounds


def section(
    run_id: str,
    sizes: list[int],
    repeats: int,
    deaths: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The whole section: the swarm up, pools of both kinds, owner deaths, down."""
    import common

    sys.path.insert(0, str(common.BENCH_DIR.parent / "tests" / "integration"))
    from multinode import two_node_swarm

    out: dict[str, Any] = {"image": common.IMAGE, "loadavg_start": os.getloadavg()}
    begin = time.monotonic()
    with two_node_swarm(
        common.IMAGE, name_prefix=f"wdb-{run_id}", labels={common.BENCH_LABEL: run_id}
    ) as swarm:
        out["setup_s"] = round(time.monotonic() - begin, 1)
        # Keeps the overlay up on the manager between the bench's containers.
        anchor = f"wdb-{run_id}-swanchor"
        swarm.manager.run(
            "run", "-d", "--rm", "--name", anchor, "--network", swarm.overlay,
            "--label", f"{common.BENCH_LABEL}={run_id}", "--entrypoint", "python3",
            swarm.image, "-c", "import signal; signal.pause()",
        )  # fmt: skip
        try:
            out["pools"] = measure_pools(swarm, run_id, sizes, repeats, progress)
            out["owner_death_s"] = measure_owner_death(swarm, run_id, deaths, progress)
        finally:
            _remove_worker_services(swarm)
            swarm.manager.run("rm", "--force", anchor, check=False)
        out["loadavg_end"] = os.getloadavg()
    return out


def tables(out: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    import common
    import report

    rows = []
    ratios = {}
    sizes = sorted({r["size"] for r in out["pools"]})
    for size in sizes:
        medians = {}
        for kind in ("docker", "swarm"):
            runs = [r for r in out["pools"] if r["size"] == size and r["kind"] == kind]
            first = common.summary(r["first_s"] for r in runs)
            every = common.summary(r["all_s"] for r in runs)
            medians[kind] = first["median"]
            reached = min(r["reached"] for r in runs)
            label = "SwarmWorker" if kind == "swarm" else "DockerWorker (manager)"
            rows.append(
                [
                    label, size, len(runs), f"{first['median']:.2f}",
                    f"{first['max']:.2f}", f"{every['median']:.2f}", f"{reached}/{size}",
                ]
            )  # fmt: skip
            if kind == "swarm":
                targets.append(
                    {
                        "target": f"SwarmWorker ×{size}: every task reachable",
                        "value": f"{reached}/{size}",
                        "ok": reached == size,
                    }
                )
        ratios[size] = medians["swarm"] / medians["docker"]
        targets.append(
            {
                "target": f"SwarmWorker ×{size} start ≤ 1.5× DockerWorker's (median)",
                "value": f"{ratios[size]:.2f}×",
                "ok": ratios[size] <= 1.5,
            }
        )
    parts = [
        report.table(
            "SWARM WORKER: pool entry → first result and → every worker reached (s)",
            ["kind", "N", "runs", "first p50", "first max", "all p50", "reached"],
            rows,
        )
    ]
    deaths = out.get("owner_death_s", [])
    if deaths:
        worst = max(deaths)
        parts.append(
            report.table(
                "SWARM WORKER: owner SIGKILL → every task on both nodes ended (s)",
                ["owners", "p50", "max"],
                [[len(deaths), f"{common.median(deaths):.2f}", f"{worst:.2f}"]],
            )
        )
        targets.append(
            {
                "target": "owner SIGKILL → every remote task ended ≤ 30 s",
                "value": f"{worst:.2f} s",
                "ok": worst <= 30.0,
            }
        )
    parts.append(
        f"two-node swarm setup {out.get('setup_s')} s; load (1 min) at start "
        f"{out['loadavg_start'][0]:.1f}, at end {out.get('loadavg_end', [0])[0]:.1f}"
    )
    return "\n\n".join(parts)


if __name__ == "__main__":
    modes = {"pool": _pools, "hold": _hold}
    if len(sys.argv) == 3 and sys.argv[1] in modes:
        import cloudpickle

        # The routine lives in __main__, which the workers do not have.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        asyncio.run(modes[sys.argv[1]](json.loads(sys.argv[2])))
    else:
        sys.exit(
            "usage: python3 swarm_worker_bench.py pool|hold '<json>'  (in the pool's "
            "container; the section runs as scripts/bench.sh --only swarm-worker)"
        )
