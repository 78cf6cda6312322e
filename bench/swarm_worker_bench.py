"""Section ``swarm-worker``: `SwarmWorker` against `DockerWorker` on a real
two-node swarm (`tests/integration/multinode.py`): pool start and owner death;
root, the machine's Engine in no swarm. Method: bench/README.md, "SwarmWorker on
two nodes".

The pools run where such a pool runs, in a container on the overlay on the
manager: ``python3 -m bench.swarm_worker_bench pool '<json>'`` (one JSON line per
measurement) or ``hold '<json>'`` (an owner of 4 workers, to be killed).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

import wool

from . import common
from .common import progress
from .report import median
from .report import summary
from .report import table
from .report import target

if TYPE_CHECKING:
    from tests.integration.multinode import Swarm

START_TIMEOUT: Final[float] = 180.0
"""Seconds a pool may take to serve on a loaded machine."""

GONE_TIMEOUT: Final[float] = 60.0
"""Seconds a dead owner's tasks may take to end before it counts as a failure."""

SERVICE_KIND: Final[str] = "wool.docker.service=worker"


# Inside the container ------------------------------------------------------------


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
            for kind in ["docker", "swarm"][:: 1 if repeat % 2 == 0 else -1]:

                def worker(*tags: str, made: Any = kinds[kind], **kw: Any) -> Any:
                    return made(
                        *tags,
                        image=config["image"],
                        network=config["network"],
                        engine_access="none",
                        log_output=False,
                        **kw,
                    )

                begin = time.monotonic()
                discovery = DockerDiscovery(network=config["network"])
                pool = wool.WorkerPool(
                    spawn=size, worker=worker, discovery=discovery, quorum=size
                )
                async with asyncio.timeout(START_TIMEOUT), pool:
                    await host()
                    first = time.monotonic() - begin
                    seen: set[str] = set()
                    while len(seen) < size:
                        seen.update(await asyncio.gather(*(host() for _ in range(size))))
                    every = time.monotonic() - begin
                    entered = time.monotonic()
                exited = time.monotonic() - entered
                row = {"kind": kind, "size": size, "first_s": first, "all_s": every}
                row |= {"reached": len(seen), "exit_s": exited}
                print(json.dumps(row), flush=True)


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


# On the host ---------------------------------------------------------------------


def _container(swarm: Swarm, run_id: str, name: str, mode: str, config: dict[str, Any]):
    socket_path = "/var/run/docker.sock"
    options = ["-v", f"{socket_path}:/var/run/docker.sock"]
    options += ["--group-add", str(os.stat(socket_path).st_gid)]
    options += ["-e", "DOCKER_HOST=unix:///var/run/docker.sock"]
    config = {"image": swarm.image, "network": swarm.overlay, **config}
    args = common.in_container(
        swarm.image, name, run_id, swarm.overlay, options, "swarm_worker_bench", mode
    )
    return subprocess.Popen(
        [*args, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _worker_services(swarm: Swarm) -> list[dict[str, Any]]:
    filters = urllib.parse.quote(json.dumps({"label": [SERVICE_KIND]}))
    return swarm.manager.get(f"/services?filters={filters}")


def _running_tasks(swarm: Swarm) -> int:
    """Tasks of Swarm workers' services that run, on both nodes."""
    return sum(
        task.get("Status", {}).get("State") in ("starting", "running")
        for service in _worker_services(swarm)
        for task in swarm.manager.tasks(service=service["ID"])
    )


def _remove_worker_services(swarm: Swarm) -> None:
    for service in _worker_services(swarm):
        swarm.manager.run("service", "rm", service["ID"], check=False)


def measure_pools(swarm: Swarm, run: common.Run) -> list[dict[str, Any]]:
    """Pool entry → first result and → every worker reached, both kinds."""
    config = {
        "sizes": run.plan["swarm_worker_sizes"],
        "repeats": run.plan["swarm_worker_repeats"],
    }
    process = _container(swarm, run.id, f"wdb-{run.id}-swpool", "pool", config)
    rows = []
    assert process.stdout is not None and process.stderr is not None
    for line in process.stdout:
        rows.append(row := json.loads(line))
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


def measure_owner_death(swarm: Swarm, run: common.Run) -> list[float]:
    """Owner SIGKILL → every task of its 4 Swarm workers ended, in seconds."""
    from tests.integration.multinode import wait_for

    bounds = []
    for repeat in range(run.plan["swarm_worker_deaths"]):
        name = f"wdb-{run.id}-swhold{repeat}"
        process = _container(swarm, run.id, name, "hold", {"count": 4})
        assert process.stdout is not None and process.stderr is not None
        if not json.loads(process.stdout.readline() or "{}").get("held"):
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


def section(run: common.Run) -> dict[str, Any]:
    """The whole section: the swarm up, pools of both kinds, owner deaths, down."""
    from tests.integration.multinode import two_node_swarm

    out: dict[str, Any] = {"image": common.IMAGE, "loadavg_start": os.getloadavg()}
    begin = time.monotonic()
    with two_node_swarm(
        common.IMAGE, name_prefix=f"wdb-{run.id}", labels={common.BENCH_LABEL: run.id}
    ) as swarm:
        out["setup_s"] = round(time.monotonic() - begin, 1)
        # Keeps the overlay up on the manager between the bench's containers.
        anchor = f"wdb-{run.id}-swanchor"
        swarm.manager.run(
            "run", "-d", "--rm", "--name", anchor, "--network", swarm.overlay,
            "--label", f"{common.BENCH_LABEL}={run.id}", "--entrypoint", "python3",
            swarm.image, "-c", "import signal; signal.pause()",
        )  # fmt: skip
        try:
            out["pools"] = measure_pools(swarm, run)
            out["owner_death_s"] = measure_owner_death(swarm, run)
        finally:
            _remove_worker_services(swarm)
            swarm.manager.run("rm", "--force", anchor, check=False)
        out["loadavg_end"] = os.getloadavg()
    return out


def tables(out: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for size in sorted({r["size"] for r in out["pools"]}):
        medians = {}
        for kind in ("docker", "swarm"):
            runs = [r for r in out["pools"] if r["size"] == size and r["kind"] == kind]
            first = summary(r["first_s"] for r in runs)
            every = summary(r["all_s"] for r in runs)
            medians[kind] = first["median"]
            reached = min(r["reached"] for r in runs)
            label = "SwarmWorker" if kind == "swarm" else "DockerWorker (manager)"
            row = [
                label,
                size,
                len(runs),
                f"{first['median']:.2f}",
                f"{first['max']:.2f}",
            ]
            rows.append(row + [f"{every['median']:.2f}", f"{reached}/{size}"])
            if kind == "swarm":
                name = f"SwarmWorker ×{size}: every task reachable"
                target(targets, name, f"{reached}/{size}", reached == size)
        ratio = medians["swarm"] / medians["docker"]
        name = f"SwarmWorker ×{size} start ≤ 1.5× DockerWorker's (median)"
        target(targets, name, f"{ratio:.2f}×", ratio <= 1.5)
    parts = [
        table(
            "SWARM WORKER: pool entry → first result and → every worker reached (s)",
            "kind, N, runs, first p50, first max, all p50, reached",
            rows,
        )
    ]
    if deaths := out.get("owner_death_s", []):
        worst = max(deaths)
        parts.append(
            table(
                "SWARM WORKER: owner SIGKILL → every task on both nodes ended (s)",
                "owners, p50, max",
                [[len(deaths), f"{median(deaths):.2f}", f"{worst:.2f}"]],
            )
        )
        name = "owner SIGKILL → every remote task ended ≤ 30 s"
        target(targets, name, f"{worst:.2f} s", worst <= 30.0)
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
            "usage: python3 -m bench.swarm_worker_bench pool|hold '<json>'  (in the "
            "pool's container; the section runs as scripts/bench.sh --only swarm-worker)"
        )
