"""What every section sets up with: run identity, labels, images, the docker CLI, the
bench network, cleanup, CPU accounting from /proc, and helper processes.

Everything the benchmark creates carries ``wool.docker.bench=<run id>`` and is
removed by `cleanup` in the orchestrator's ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Final

from .report import rfc3339_ns

BENCH_DIR: Final[Path] = Path(__file__).resolve().parent
REPO_DIR: Final[Path] = BENCH_DIR.parent
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
READY_PREFIX: Final[str] = "wool-docker ready "
READY_COMMAND: Final[list[str]] = [
    "sh",
    "-c",
    f'echo "{READY_PREFIX}{{\\"version\\":\\"{WOOL_VERSION}\\",\\"pid\\":1}}"; '
    "exec sleep infinity",
]
"""A container that announces itself like a wool worker, then idles."""

CLI_TIMEOUT: Final[float] = 120.0
"""Seconds one docker CLI call may take."""


@dataclass
class Run:
    """One benchmark run, as every section gets it."""

    id: str
    plan: dict[str, Any]
    network: str = ""
    api: str = ""
    """The Engine's API version."""
    impls: list[str] = field(default_factory=list)
    """The subscribers the discovery sections compare."""
    engine: Any = None
    """The discovery sections' `discovery_bench.Engine`."""


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


def console() -> Any:
    return _console


def selector(run_id: str) -> dict[str, str]:
    """The discovery selector of this run's containers."""
    return {"wool.worker": "true", BENCH_LABEL: run_id}


def container_labels(run_id: str, **extra: str) -> dict[str, str]:
    """Labels of a cheap discoverable container of this run."""
    return {**selector(run_id), "wool.version": WOOL_VERSION, **extra}


def cli(*args: str) -> str:
    """``docker ARGS``, synchronously (it also runs after the event loop is gone);
    its stdout, whatever its exit status."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=CLI_TIMEOUT
    ).stdout


async def docker(*args: str, timeout: float = CLI_TIMEOUT) -> str:
    """Run ``docker ARGS`` without blocking the loop; return its stdout."""
    process = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} exited {process.returncode}: "
            f"{stderr.decode().strip()}"
        )
    return stdout.decode()


async def create_network(run_id: str) -> str:
    name = f"wdb-{run_id}"
    await docker("network", "create", "--label", f"{BENCH_LABEL}={run_id}", name)
    return name


async def running_ids(run_id: str, network: str) -> set[str]:
    """The Engine's truth: running containers with this run's selector on ``network``."""
    args = ["ps", "-q", "--no-trunc", "--filter", f"network={network}"]
    for k, v in selector(run_id).items():
        args += ["--filter", f"label={k}={v}"]
    return set((await docker(*args)).split())


def leftovers(run_id: str) -> dict[str, list[str]]:
    """Containers and networks still labelled with this run."""
    label = f"label={BENCH_LABEL}={run_id}"
    return {
        "container": cli("ps", "-aq", "--filter", label).split(),
        "network": cli("network", "ls", "-q", "--filter", label).split(),
    }


def cleanup(run_id: str) -> list[str]:
    """Remove every container and network labelled with this run; say what went."""
    found = leftovers(run_id)
    if found["container"]:
        cli("rm", "-f", "-v", *found["container"])
    if found["network"]:
        cli("network", "rm", *found["network"])
    return [f"{kind} {i}" for kind, ids in found.items() for i in ids]


async def ready_line(stream: Any) -> int | None:
    """The Engine's time of the ready line in a container's log stream (aiodocker,
    with timestamps); None if the stream ends first."""
    buffered = ""
    async with contextlib.aclosing(stream) as chunks:
        async for chunk in chunks:
            buffered += chunk
            while "\n" in buffered:
                line, buffered = buffered.split("\n", 1)
                stamp, _, text = line.partition(" ")
                if text.startswith(READY_PREFIX):
                    return rfc3339_ns(stamp)
    return None


def in_container(
    image: str, name: str, run_id: str, network: str, options: list[str], *args: str
) -> list[str]:
    """``docker run`` (stdin open) of ``python3 -m bench.ARGS`` in a container of the
    worker image on ``network``, with this directory; ``options`` for docker run."""
    return [
        "docker", "run", "--rm", "-i", "--name", name,
        "--label", f"{BENCH_LABEL}={run_id}", "--network", network,
        "-v", f"{BENCH_DIR}:/opt/bench/bench:ro", "--workdir", "/opt/bench",
        "-e", "PYTHONDONTWRITEBYTECODE=1", *options,
        "--entrypoint", "python3", image, "-m", f"bench.{args[0]}", *args[1:],
    ]  # fmt: skip


# CPU from /proc ------------------------------------------------------------------


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
            data = Path(f"/proc/{entry.name}/stat").read_text()
            groups = Path(f"/proc/{entry.name}/cgroup").read_text()
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
            pid = after.get(pid, before.get(pid, ("", 0, 0.0)))[1]
            if pid == me:
                return True
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
    rest = max(0.0, total - sum(groups.values()))
    return groups | {"(exited in between, or unattributed)": rest}


# Helper processes ----------------------------------------------------------------


class Peer:
    """A helper process (``python -m bench.MODULE ARGS``) that answers one JSON
    line per JSON command line."""

    def __init__(self, process: asyncio.subprocess.Process, name: str):
        self.process, self.name = process, name

    @classmethod
    async def spawn(cls, name: str, module: str, *args: str) -> Peer:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-u", "-m", f"bench.{module}", *args,
            cwd=REPO_DIR, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024,
        )  # fmt: skip
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
