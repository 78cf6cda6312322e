"""Shared pieces of the benchmark: run identity, labels, docker CLI, statistics.

Everything the benchmark creates carries ``wool.docker.bench=<run id>`` and is
removed by `cleanup` in the orchestrator's ``finally``.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Final

BENCH_DIR: Final[Path] = Path(__file__).resolve().parent
RESULTS_DIR: Final[Path] = BENCH_DIR / "results"

BENCH_LABEL: Final[str] = "wool.docker.bench"
"""Label key on every container and network the benchmark creates."""

IMAGE: Final[str] = os.environ.get("WOOL_DOCKER_IMAGE", "wool-docker-worker:dev")
"""The worker image for DockerWorker."""

BASE_IMAGE: Final[str] = os.environ.get(
    "WOOL_DOCKER_BASE_IMAGE", "wool-docker-base:bookworm"
)
"""Image of the cheap idle containers (no wool) used by the discovery sections."""

WOOL_VERSION: Final[str] = "0.15.7"

READY_COMMAND: Final[list[str]] = [
    "sh",
    "-c",
    'echo "wool-docker ready {\\"version\\":\\"' + WOOL_VERSION + '\\",\\"pid\\":1}"; '
    "exec sleep infinity",
]
"""A container that announces itself like a wool worker, then idles."""

CLI_TIMEOUT: Final[float] = 120.0
"""Seconds one docker CLI call may take."""


def selector(run_id: str) -> dict[str, str]:
    """The discovery selector of this run's containers."""
    return {"wool.worker": "true", BENCH_LABEL: run_id}


def container_labels(run_id: str, **extra: str) -> dict[str, str]:
    """Labels of a cheap discoverable container of this run."""
    return {**selector(run_id), "wool.version": WOOL_VERSION, **extra}


def network_name(run_id: str) -> str:
    return f"wdb-{run_id}"


async def docker(*args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> str:
    """Run ``docker ARGS`` without blocking the loop; return its stdout."""
    process = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if check and process.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} exited {process.returncode}: "
            f"{stderr.decode().strip()}"
        )
    return stdout.decode()


async def create_network(run_id: str) -> str:
    name = network_name(run_id)
    await docker("network", "create", "--label", f"{BENCH_LABEL}={run_id}", name)
    return name


async def running_ids(run_id: str, network: str) -> set[str]:
    """The Engine's truth: running containers with this run's selector on ``network``."""
    filters = [f"label={k}={v}" for k, v in selector(run_id).items()]
    args = ["ps", "-q", "--no-trunc", "--filter", f"network={network}"]
    for f in filters:
        args += ["--filter", f]
    return set((await docker(*args)).split())


def cleanup(run_id: str) -> list[str]:
    """Remove every container and network labelled with this run; say what went.

    Synchronous on purpose: it also runs after the event loop is gone.
    """
    removed: list[str] = []

    def run(*args: str) -> str:
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        return result.stdout

    label = f"label={BENCH_LABEL}={run_id}"
    ids = run("ps", "-aq", "--filter", label).split()
    if ids:
        run("rm", "-f", "-v", *ids)
        removed += [f"container {i}" for i in ids]
    nets = run("network", "ls", "-q", "--filter", label).split()
    if nets:
        run("network", "rm", *nets)
        removed += [f"network {n}" for n in nets]
    return removed


def leftovers(run_id: str) -> list[str]:
    """Anything still labelled with this run (should be nothing after cleanup)."""
    label = f"label={BENCH_LABEL}={run_id}"
    out = []
    for args in (
        ["ps", "-aq", "--filter", label],
        ["network", "ls", "-q", "--filter", label],
    ):
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
        out += result.stdout.split()
    return out


def rfc3339_ns(stamp: str) -> int:
    """``2026-11-29T16:45:01.123456789Z`` → Unix nanoseconds."""
    stamp = stamp.strip()
    if not stamp.endswith("Z"):
        raise ValueError(f"not a UTC timestamp: {stamp!r}")
    whole, _, frac = stamp[:-1].partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    digits = (frac + "000000000")[:9]
    return seconds * 1_000_000_000 + int(digits)


def host_cpu_seconds() -> float:
    """CPU time every process on the host has used so far (from /proc/stat).

    Other work on the machine is included, so deltas are noisy upper bounds.
    """
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, tuple[str, int, float]]:
    """Every process's (name, parent pid, CPU seconds so far), from /proc.

    A process in a container (a ``/docker/<id>`` cgroup) is named
    ``container <id>:<comm>``.
    """
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                data = stat.read()
            with open(f"/proc/{entry.name}/cgroup") as cgroup:
                groups = cgroup.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        fields = data[data.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        container = groups.partition("/docker/")[2][:64]
        name = f"container {container}:{comm}" if container else comm
        out[int(entry.name)] = (name, int(fields[1]), cpu)
    return out


def cpu_by_process(
    before: dict[int, tuple[str, int, float]],
    after: dict[int, tuple[str, int, float]],
    total: float,
    ours: set[str],
) -> dict[str, float]:
    """CPU seconds spent between two `process_cpu` snapshots, by process name.

    This process is ``bench (owner)``, its descendants ``bench children``, the
    containers in ``ours`` ``bench containers``, other containers ``other
    containers``; processes that came and went in between only show in the
    remainder.
    """
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            parent = after.get(pid, before.get(pid, ("", 0, 0.0)))[1]
            if parent == me:
                return True
            pid = parent
        return False

    groups: dict[str, float] = {}
    for pid, (name, _, cpu) in after.items():
        previous = before.get(pid)
        delta = cpu - (previous[2] if previous and previous[0] == name else 0.0)
        if delta <= 0:
            continue
        if name.startswith("kworker/"):
            name = "kernel workers (kworker)"
        elif name.startswith("container "):
            container, _, comm = name.removeprefix("container ").partition(":")
            name = (
                f"bench containers: {comm}" if container in ours else "other containers"
            )
        elif pid == me:
            name = "bench (owner)"
        elif descends(pid):
            name = f"bench children: {name}"
        groups[name] = groups.get(name, 0.0) + delta
    groups["(exited in between, or unattributed)"] = max(
        0.0, total - sum(groups.values())
    )
    return groups


# Statistics ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile ``p`` (0-100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, median, min, max, p10, p90, p99 of ``values``."""
    v = list(values)
    return {
        "n": len(v),
        "median": median(v),
        "min": min(v) if v else math.nan,
        "max": max(v) if v else math.nan,
        "p10": percentile(v, 10),
        "p90": percentile(v, 90),
        "p99": percentile(v, 99),
    }


# Subprocess protocol -----------------------------------------------------------


class Peer:
    """A helper process that answers one JSON line per JSON command line."""

    def __init__(self, process: asyncio.subprocess.Process, name: str):
        self.process = process
        self.name = name

    @classmethod
    async def spawn(cls, name: str, *args: str) -> Peer:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(process, name)

    async def request(self, deadline: float, /, **command: Any) -> dict[str, Any]:
        """Send one command and wait (bounded) for its one-line answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        async with asyncio.timeout(deadline):
            line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} exited {code} during {command['cmd']}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {command['cmd']} failed: {reply['error']}")
        return reply

    async def close(self) -> None:
        """Ask it to exit; kill it if it does not within a few seconds."""
        if self.process.returncode is not None:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b'{"cmd": "exit"}\n')
            await self.process.stdin.drain()
            async with asyncio.timeout(10):
                await self.process.wait()
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.process.kill()
            await self.process.wait()
