"""Discovery of remote Swarm tasks on a real two-node swarm: latency and Engine load.

The ``swarm`` section of ``bench/run.py`` (``scripts/bench.sh --only swarm``; root,
the machine's Engine in no swarm). It builds the swarm of
`tests/integration/multinode.py` (the machine's Engine as manager, a second Engine
in a network namespace as worker) and measures, for each poll period
(``WOOL_DOCKER_SWARM_INTERVAL``):

- latency: a service constrained to the other node is scaled up by steps, then
  its tasks are killed (``docker -H <second> kill``) one at a time, round after
  round (Swarm replaces them: more starts). A subscriber
  (``DockerDiscovery(network=<overlay>, labels={service name}).subscriber``)
  runs in a container on the overlay on the manager, with the manager's socket,
  and stamps each event with ``time.time()`` (the container shares the host's
  clock). Added is measured from the task container's ``State.StartedAt`` and
  from its ready line's log timestamp (both from the second Engine), dropped from
  the container's ``die`` event (the second Engine's ``timeNano``) and from the
  moment the kill command was issued;
- Engine load: one idle subscriber in such a container, over a service of 4
  tasks on both nodes, talks to the Engine through a counting proxy (a unix
  socket in front of ``/var/run/docker.sock``, bind-mounted as the container's
  ``/var/run/docker.sock``) that parses every HTTP request head it forwards;
  the requests in the idle window are counted by method and path, next to the
  CPU time of the machine's dockerd and of the subscriber's container.

Inside the subscriber's container this file runs as
``python3 /bench/swarm_latency.py watch NETWORK KEY=VALUE...``: one JSON line per
event, until its standard input ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Final

import common
import report

if TYPE_CHECKING:
    from multinode import Swarm

SERVICE_LABEL: Final[str] = "com.docker.swarm.service.name"
READY: Final[str] = "wool-docker ready "
ENGINE_SOCKET: Final[str] = "/var/run/docker.sock"

START_TIMEOUT: Final[float] = 240.0
"""Seconds a step of task starts on the second Engine may take (vfs: a start
spends 15-22 s preparing alone; several at once on 2 cores, longer)."""

DROP_TIMEOUT: Final[float] = 30.0
"""Seconds a killed task's worker-dropped may take before it counts as missed."""

TRAEFIK_REFRESH_S: Final[float] = 15.0
"""Traefik's Swarm provider default ``refreshSeconds``."""


# Inside the container -------------------------------------------------------------


async def _watch(network: str, labels: dict[str, str]) -> None:
    from wool_docker import DockerDiscovery

    print(json.dumps({"type": "subscribed", "t": time.time()}), flush=True)
    async for event in DockerDiscovery(network=network, labels=labels).subscriber:
        t = time.time()
        record = {
            "type": str(event.type),
            "uid": str(event.metadata.uid),
            "address": event.metadata.address,
            "t": t,
        }
        print(json.dumps(record), flush=True)


async def _watch_main(network: str, pairs: list[str]) -> None:
    labels = dict(pair.split("=", 1) for pair in pairs)
    watch = asyncio.ensure_future(_watch(network, labels))
    await asyncio.to_thread(sys.stdin.read)
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch


# On the host ----------------------------------------------------------------------


def uid_of(container_id: str) -> str:
    """The uid discovery gives a container (its id's first 32 hex digits)."""
    return str(uuid.UUID(container_id[:32]))


class Watcher:
    """The subscriber in a container on the overlay; its events as they arrive."""

    def __init__(
        self,
        swarm: Swarm,
        run_id: str,
        name: str,
        labels: dict[str, str],
        interval: float,
        engine_socket: str,
        log: Path,
    ):
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.log = log
        args = [
            "docker",
            "run",
            "--rm",
            "-i",
            "--name",
            name,
            "--label",
            f"{common.BENCH_LABEL}={run_id}",
            "--network",
            swarm.overlay,
            "-v",
            f"{common.BENCH_DIR}:/bench:ro",
            "-v",
            f"{engine_socket}:/var/run/docker.sock",
            # The counting proxy's socket is root's alone: a harness privilege.
            "--user",
            "0",
            "-e",
            f"WOOL_DOCKER_SWARM_INTERVAL={interval:g}",
            "-e",
            "PYTHONDONTWRITEBYTECODE=1",
            "--entrypoint",
            "python3",
            swarm.image,
            "/bench/swarm_latency.py",
            "watch",
            swarm.overlay,
            *[f"{k}={v}" for k, v in labels.items()],
        ]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda es: any(e["type"] == "subscribed" for e in es), 60, "subscribe")
        self.container = subprocess.run(
            ["docker", "inspect", "--format", "{{.Id}}", name],
            capture_output=True,
            text=True,
            check=True,
            timeout=common.CLI_TIMEOUT,
        ).stdout.strip()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.events.append(json.loads(line))
                self.changed.notify_all()
        with self.changed:
            self.events.append({"type": "ended", "t": time.time()})
            self.changed.notify_all()

    def wait(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str
    ) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.events), timeout):
                raise TimeoutError(f"the subscriber: timed out waiting for {what}")

    def wait_live(self, count: int, timeout: float, what: str) -> None:
        """Wait until ``count`` workers are added and not dropped."""
        self.wait(lambda _: len(self.live()) >= count, timeout, what)

    def live(self) -> set[str]:
        """Uids added and not dropped since."""
        alive: set[str] = set()
        with self.changed:
            for e in self.events:
                if e["type"] == "worker-added":
                    alive.add(e["uid"])
                elif e["type"] == "worker-dropped":
                    alive.discard(e["uid"])
        return alive

    def first(self, kind: str, uid: str, since: float = 0.0) -> float | None:
        with self.changed:
            for e in self.events:
                if e["type"] == kind and e.get("uid") == uid and e["t"] >= since:
                    return e["t"]
        return None

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)
            self.process.wait(30)
        self.reader.join(10)


class EngineEvents(threading.Thread):
    """One Engine's container events: (id, action) → the Engine's timeNano (s)."""

    def __init__(self, host: str):
        super().__init__(daemon=True)
        self.process = subprocess.Popen(
            [
                "docker",
                "-H",
                host,
                "events",
                "--filter",
                "type=container",
                "--format",
                "{{json .}}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.seen: dict[tuple[str, str], float] = {}

    def run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            key = (event.get("id", ""), event.get("Action", ""))
            self.seen.setdefault(key, event["timeNano"] / 1e9)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class CountingProxy:
    """A unix socket forwarding to the Engine's, counting the requests it carries.

    Parses every request head on the way in (``Content-Length`` bodies are
    skipped; a chunked or upgraded request makes the rest of that connection
    opaque, and is said so); answers pass through untouched.
    """

    def __init__(self, path: Path, upstream: str = ENGINE_SOCKET):
        self.path, self.upstream = path, upstream
        self.requests: list[tuple[float, str, str]] = []
        self.opaque: list[tuple[float, str]] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        os.chmod(path, 0o666)
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.upstream)
            with self.lock:
                self.connections += 1
            pair = [client, engine, 2]
            threading.Thread(target=self._inbound, args=(pair,), daemon=True).start()
            threading.Thread(target=self._outbound, args=(pair,), daemon=True).start()

    def _done(self, pair: list[Any], write_end: socket.socket) -> None:
        with contextlib.suppress(OSError):
            write_end.shutdown(socket.SHUT_WR)
        with self.lock:
            pair[2] -= 1
            last = pair[2] == 0
        if last:
            pair[0].close()
            pair[1].close()

    def _outbound(self, pair: list[Any]) -> None:
        client, engine = pair[0], pair[1]
        try:
            while data := engine.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._done(pair, client)

    def _inbound(self, pair: list[Any]) -> None:
        client, engine = pair[0], pair[1]
        buffer, body, opaque = b"", 0, False
        try:
            while data := client.recv(65536):
                engine.sendall(data)
                if opaque:
                    continue
                buffer += data
                while True:
                    if body:
                        taken = min(body, len(buffer))
                        buffer, body = buffer[taken:], body - taken
                        if body:
                            break
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
                    line, *headers = head.split("\r\n")
                    method, target = (line.split(" ") + ["", ""])[:2]
                    with self.lock:
                        self.requests.append((time.time(), method, target))
                    fields = {
                        k.strip().lower(): v.strip()
                        for k, _, v in (h.partition(":") for h in headers)
                    }
                    if (
                        "chunked" in fields.get("transfer-encoding", "").lower()
                        or "upgrade" in fields
                    ):
                        opaque = True
                        with self.lock:
                            self.opaque.append((time.time(), target))
                        break
                    body = int(fields.get("content-length", "0") or 0)
        except OSError:
            pass
        finally:
            self._done(pair, engine)

    def between(self, start: float, end: float) -> list[tuple[float, str, str]]:
        with self.lock:
            return [r for r in self.requests if start <= r[0] < end]

    def close(self) -> None:
        self.server.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def endpoint(target: str) -> str:
    """``/v1.41/tasks?filters=…`` → ``/tasks``; ids in paths → ``{id}``."""
    path = target.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if parts and parts[0].startswith("v1."):
        parts = parts[1:]
    out = []
    for i, part in enumerate(parts):
        known = part in {"json", "logs", "events", "info", "version", "_ping"}
        out.append("{id}" if i == 1 and not known else part)
    return "/" + "/".join(out)


def dockerd_cpu() -> float:
    """CPU seconds the machine's dockerd has used so far."""
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def container_cpu(container: str) -> float:
    """CPU seconds the processes of one container have used (those alive)."""
    total = 0.0
    for name, _, cpu in common.process_cpu().values():
        if name.startswith(f"container {container[:64]}:"):
            total += cpu
    return total


def stamp_of(line: str) -> float:
    """The timestamp ``docker logs --timestamps`` puts before a line, Unix s."""
    return common.rfc3339_ns(line.split(" ", 1)[0]) / 1e9


def ms_summary(values: list[float]) -> dict[str, Any]:
    s = common.summary(values)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}


class Tasks:
    """The remote task containers of one service, each described once."""

    def __init__(self, swarm: Swarm, service: str):
        self.swarm, self.service = swarm, service
        self.by_uid: dict[str, dict[str, Any]] = {}

    def refresh(self) -> None:
        for task in self.swarm.manager.tasks(service=self.service):
            status = task.get("Status", {})
            cid = status.get("ContainerStatus", {}).get("ContainerID")
            if cid and uid_of(cid) not in self.by_uid:
                self.by_uid[uid_of(cid)] = {
                    "container": cid,
                    "task": task["ID"],
                    "node": task.get("NodeID"),
                }

    def describe(self, uid: str) -> dict[str, Any]:
        """StartedAt and the ready line's stamp from the second Engine."""
        entry = self.by_uid.get(uid)
        if entry is None:
            self.refresh()
            entry = self.by_uid[uid]
        if "started" in entry:
            return entry
        cid = entry["container"]
        (inspected,) = json.loads(self.swarm.worker.out("container", "inspect", cid))
        entry["started"] = common.rfc3339_ns(inspected["State"]["StartedAt"]) / 1e9
        logs = self.swarm.worker.run("logs", "--timestamps", cid, check=False)
        ready = [
            line for line in (logs.stdout + logs.stderr).splitlines() if READY in line
        ]
        entry["ready"] = stamp_of(ready[0]) if ready else None
        return entry


def measure_latency(
    swarm: Swarm,
    run_id: str,
    interval: float,
    on_node: int,
    step: int,
    kills: int,
    log: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Remote starts and kills; every event of the subscriber against the Engine."""
    service = swarm.create_service(0, "--constraint", f"node.id=={swarm.worker.node_id}")
    tasks = Tasks(swarm, service)
    engine_events = EngineEvents(swarm.worker.host)
    engine_events.start()
    # Through the counting proxy too: its GET /tasks stamps are the polls.
    directory = Path(tempfile.mkdtemp(prefix=f"wdb-{run_id}-proxy-"))
    proxy = CountingProxy(directory / "docker.sock")
    watcher = Watcher(
        swarm,
        run_id,
        f"wdb-{run_id}-swatch-lat{interval:g}",
        {SERVICE_LABEL: service},
        interval,
        str(proxy.path),
        log,
    )
    killed: dict[str, dict[str, float]] = {}
    began = time.time()
    try:
        for target in range(step, on_node + 1, step):
            swarm.manager.run("service", "scale", "--detach", f"{service}={target}")
            watcher.wait_live(target, START_TIMEOUT, f"{target} remote tasks added")
            progress(f"swarm interval {interval:g} s: {target} remote tasks added")
        while len(killed) < kills:
            for uid in sorted(watcher.live() - killed.keys()):
                if len(killed) >= kills:
                    break
                entry = tasks.describe(uid)
                at = time.time()
                swarm.worker.run("kill", entry["container"])
                killed[uid] = {"cmd": at}
                with contextlib.suppress(TimeoutError):
                    watcher.wait(
                        lambda _es, u=uid, a=at: (
                            watcher.first("worker-dropped", u, a) is not None
                        ),
                        DROP_TIMEOUT,
                        "a drop",
                    )
                # Load generation: the next kill at a random phase of the poll
                # period (right after a drop, a poll has just been).
                time.sleep(random.uniform(0.1, 0.1 + interval))
            progress(f"swarm interval {interval:g} s: {len(killed)} kills")
            watcher.wait(
                lambda _es: len(watcher.live() - killed.keys()) >= on_node,
                START_TIMEOUT,
                "the replacements added",
            )
        for uid in watcher.live():
            tasks.describe(uid)
    finally:
        watcher.close()
        proxy.close()
        with contextlib.suppress(OSError):
            directory.rmdir()
        swarm.remove_service(service, timeout=300)
        engine_events.close()
    polls = [t for t, _, target in proxy.requests if endpoint(target) == "/tasks"]
    gaps = [(a, b - a) for a, b in zip(polls, polls[1:], strict=False)]

    added_uids = [e["uid"] for e in watcher.events if e["type"] == "worker-added"]
    dropped_uids = [e["uid"] for e in watcher.events if e["type"] == "worker-dropped"]
    samples: list[dict[str, Any]] = []
    for uid in dict.fromkeys(added_uids):
        entry = tasks.by_uid.get(uid, {})
        added = watcher.first("worker-added", uid)
        sample: dict[str, Any] = {"uid": uid, **entry, "added": added}
        if uid in killed:
            cid = entry.get("container", "")
            sample["kill_cmd"] = killed[uid]["cmd"]
            sample["died"] = engine_events.seen.get((cid, "die"))
            sample["dropped"] = watcher.first("worker-dropped", uid, killed[uid]["cmd"])
        samples.append(sample)
    dying = [
        (s["died"], s["dropped"]) for s in samples if s.get("died") and s.get("dropped")
    ]

    def deltas(end: str, start: str) -> list[float]:
        return [
            s[end] - s[start]
            for s in samples
            if s.get(end) is not None and s.get(start) is not None
        ]

    return {
        "service": service,
        "began": began,
        "samples": samples,
        "events": watcher.events,
        "added_from_start_s": ms_summary(deltas("added", "started")),
        "added_from_ready_s": ms_summary(deltas("added", "ready")),
        "ready_from_start_s": ms_summary(deltas("ready", "started")),
        "dropped_from_die_s": ms_summary(deltas("dropped", "died")),
        "dropped_from_kill_cmd_s": ms_summary(deltas("dropped", "kill_cmd")),
        "polls": [round(t - began, 3) for t in polls],
        "poll_gap_s": ms_summary([g for _, g in gaps]),
        # Gaps between polls that began while a killed task was dead and not
        # yet dropped.
        "poll_gap_during_drop_s": ms_summary(
            [g for a, g in gaps if any(d <= a < e for d, e in dying)]
        ),
        "kills": len(killed),
        "drops_missed": [
            u for u in killed if watcher.first("worker-dropped", u) is None
        ],
        "added_twice": [u for u, n in Counter(added_uids).items() if n > 1],
        # The subscriber is closed before the service goes: any other drop is
        # a live task dropped (a flap).
        "dropped_unkilled": sorted({u for u in dropped_uids if u not in killed}),
    }


def request_costs(swarm: Swarm, repeats: int = 20) -> dict[str, Any]:
    """What one poll's requests cost the manager, timed from the host."""
    out: dict[str, Any] = {}
    for name, path in (
        (
            "GET /tasks (desired-state=running)",
            "/tasks?filters="
            + urllib.parse.quote(json.dumps({"desired-state": ["running"]})),
        ),
        ("GET /nodes", "/nodes"),
        ("GET /services", "/services"),
    ):
        times, size = [], 0
        for _ in range(repeats):
            begin = time.perf_counter()
            status, body = swarm.manager.request("GET", path)
            times.append(time.perf_counter() - begin)
            size = len(body)
        out[name] = {"median_ms": round(common.median(times) * 1e3, 2), "bytes": size}
    return out


def measure_rate(
    swarm: Swarm,
    run_id: str,
    intervals: list[float],
    idle_seconds: float,
    results: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """One idle subscriber per poll period, through the counting proxy."""
    service = swarm.create_service(4, "--replicas-max-per-node", "2")
    out: dict[str, Any] = {"service": service, "by_interval": {}}
    try:

        def running() -> list[dict[str, Any]] | None:
            tasks = swarm.manager.tasks(service=service, desired_state="running")
            states = [t["Status"]["State"] for t in tasks]
            return tasks if states == ["running"] * 4 else None

        from multinode import wait_for

        tasks = wait_for(running, timeout=START_TIMEOUT, what="4 running tasks")
        nodes = Counter(t["NodeID"] for t in tasks)
        out["tasks_per_node"] = {
            "manager": nodes[swarm.manager.node_id],
            "worker": nodes[swarm.worker.node_id],
        }
        out["costs"] = request_costs(swarm)
        # The Engine without a subscriber, over the same service, for comparison.
        cpu0, t0 = dockerd_cpu(), time.time()
        time.sleep(idle_seconds / 2)
        out["dockerd_cpu_pct_without_subscriber"] = round(
            100 * (dockerd_cpu() - cpu0) / (time.time() - t0), 3
        )
        for interval in intervals:
            directory = Path(tempfile.mkdtemp(prefix=f"wdb-{run_id}-proxy-"))
            proxy = CountingProxy(directory / "docker.sock")
            watcher = None
            try:
                watcher = Watcher(
                    swarm,
                    run_id,
                    f"wdb-{run_id}-swatch-idle{interval:g}",
                    {SERVICE_LABEL: service},
                    interval,
                    str(proxy.path),
                    results,
                )
                watcher.wait_live(4, START_TIMEOUT, "4 workers")
                # Two periods more: the last poll of the initial sync is over.
                time.sleep(2 * interval)
                start, cpu0 = time.time(), dockerd_cpu()
                sub0 = container_cpu(watcher.container)
                time.sleep(idle_seconds)
                end = time.time()
                dcpu = dockerd_cpu() - cpu0
                scpu = container_cpu(watcher.container) - sub0
                window = proxy.between(start, end)
                counted = Counter(f"{m} {endpoint(t)}" for _, m, t in window)
                out["by_interval"][f"{interval:g}"] = {
                    "window_s": round(end - start, 3),
                    "requests": len(window),
                    "per_s": round(len(window) / (end - start), 3),
                    "by_endpoint": dict(counted.most_common()),
                    "targets": sorted({t for _, _, t in window}),
                    "before_window": [
                        [round(t - start, 3), m, tg]
                        for t, m, tg in proxy.requests
                        if t < start
                    ],
                    "connections": proxy.connections,
                    "opaque": proxy.opaque,
                    "events_in_window": [
                        e for e in watcher.events if start <= e["t"] < end
                    ],
                    "dockerd_cpu_pct": round(100 * dcpu / (end - start), 3),
                    "subscriber_cpu_pct": round(100 * scpu / (end - start), 3),
                }
                progress(
                    f"swarm interval {interval:g} s: {len(window)} requests in "
                    f"{end - start:.0f} s"
                )
            finally:
                if watcher is not None:
                    watcher.close()
                proxy.close()
                with contextlib.suppress(OSError):
                    directory.rmdir()
    finally:
        swarm.remove_service(service, timeout=300)
    return out


def section(
    run_id: str,
    intervals: list[float],
    kills: list[int],
    on_node: int,
    step: int,
    idle_seconds: float,
    progress: Callable[[str], None],
    wait_for_engine: float = 900.0,
) -> dict[str, Any]:
    """The whole section: the swarm up, latency per interval, load, the swarm down."""
    sys.path.insert(0, str(common.BENCH_DIR.parent / "tests" / "integration"))
    from multinode import MANAGER_HOST
    from multinode import Engine
    from multinode import two_node_swarm

    manager = Engine(MANAGER_HOST)
    waited = time.monotonic()
    while (state := manager.swarm_state()) != "inactive":
        if time.monotonic() - waited > wait_for_engine:
            raise RuntimeError(f"the machine's Engine stayed in swarm state {state!r}")
        progress(f"swarm: the machine's Engine is in swarm state {state!r}; waiting")
        time.sleep(30)
    out: dict[str, Any] = {
        "image": common.IMAGE,
        "loadavg_start": os.getloadavg(),
        "loadavg_before": {},
        "latency": {},
    }
    log = common.RESULTS_DIR / f"swarm-{run_id}-subscribers.log"
    out["subscriber_log"] = str(log.relative_to(common.BENCH_DIR.parent))
    begin = time.monotonic()
    with two_node_swarm(
        common.IMAGE,
        name_prefix=f"wdb-{run_id}",
        labels={common.BENCH_LABEL: run_id},
    ) as swarm:
        out["setup_s"] = round(time.monotonic() - begin, 1)
        progress(f"swarm: two-node swarm up in {out['setup_s']} s")
        for interval, count in zip(intervals, kills, strict=True):
            out["loadavg_before"][f"latency {interval:g}"] = os.getloadavg()
            out["latency"][f"{interval:g}"] = measure_latency(
                swarm, run_id, interval, on_node, step, count, log, progress
            )
        out["loadavg_before"]["rate"] = os.getloadavg()
        out["rate"] = measure_rate(swarm, run_id, intervals, idle_seconds, log, progress)
        out["loadavg_end"] = os.getloadavg()
        mark = time.monotonic()
    out["teardown_s"] = round(time.monotonic() - mark, 1)
    out["after"] = {
        "swarm_state": manager.swarm_state(),
        "netns": subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True
        ).stdout.split(),
    }
    return out


def traefik(tasks: int, services: int = 1) -> dict[str, Any]:
    """Traefik's Swarm provider at its defaults, from its source (v3
    ``pkg/provider/docker/pswarm.go``): every ``refreshSeconds`` (15 s) it lists
    services, asks the version, lists swarm networks, then for each service (not
    ``lbswarm``) lists its tasks with desired state running, and inspects the node
    of each such task; it uses tasks in state ``running`` only, and takes no
    events in Swarm mode."""
    per_tick = 3 + services + tasks
    return {
        "per_tick": per_tick,
        "per_s": round(per_tick / TRAEFIK_REFRESH_S, 3),
        "refresh_s": TRAEFIK_REFRESH_S,
    }


def _fmt(summary: dict[str, Any]) -> list[Any]:
    if not summary.get("n"):
        return [0, "-", "-", "-"]
    return [
        summary["n"],
        f"{summary['median']:.2f}",
        f"{summary['p99']:.2f}",
        f"{summary['max']:.2f}",
    ]


def tables(out: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    rows = []
    for interval, lat in out["latency"].items():
        for label, key in (
            ("task container started -> worker-added", "added_from_start_s"),
            ("ready line (log stamp) -> worker-added", "added_from_ready_s"),
            ("  (started -> ready line)", "ready_from_start_s"),
            ("container died (die event) -> worker-dropped", "dropped_from_die_s"),
            ("docker kill issued -> worker-dropped", "dropped_from_kill_cmd_s"),
            ("poll period (gaps between GET /tasks)", "poll_gap_s"),
            ("  gaps of polls begun between death and drop", "poll_gap_during_drop_s"),
        ):
            rows.append([f"{interval} s", label, *_fmt(lat[key])])
        rows.append(
            [
                f"{interval} s",
                f"  kills {lat['kills']}, drops missed {len(lat['drops_missed'])}, "
                f"added twice {len(lat['added_twice'])}, dropped without a kill "
                f"{len(lat['dropped_unkilled'])}",
                "",
                "",
                "",
                "",
            ]
        )
    parts = [
        report.table(
            "SWARM REMOTE TASKS: latency (s), subscriber in a container on the overlay",
            ["interval", "from -> to", "n", "p50", "p99", "max"],
            rows,
        )
    ]
    rate = out.get("rate")
    if rate:
        remote = rate["tasks_per_node"]["worker"]
        t = traefik(4)
        rrows = []
        for interval, r in rate["by_interval"].items():
            by = ", ".join(f"{k} {v}" for k, v in r["by_endpoint"].items())
            rrows.append(
                [
                    f"wool-docker, interval {interval} s",
                    r["requests"],
                    f"{r['per_s']:.2f}",
                    f"{r['dockerd_cpu_pct']:.2f}",
                    f"{r['subscriber_cpu_pct']:.2f}",
                    by,
                ]
            )
        window = next(iter(rate["by_interval"].values()))["window_s"]
        rrows.append(
            [
                "Traefik swarm provider, 15 s (computed)",
                round(t["per_s"] * window),
                f"{t['per_s']:.2f}",
                "",
                "",
                f"per tick: services, version, networks, 1 tasks, {4} nodes/ID",
            ]
        )
        parts.append(
            report.table(
                f"SWARM ENGINE LOAD: one idle subscriber, service of 4 tasks "
                f"({4 - remote} manager + {remote} worker), {window:.0f} s window",
                ["who", "requests", "req/s", "dockerd %", "subscr. %", "by endpoint"],
                rrows,
            )
        )
        costs = ", ".join(
            f"{k} {v['median_ms']} ms / {v['bytes']} B" for k, v in rate["costs"].items()
        )
        parts.append(
            f"per request (host, median of 20): {costs}; dockerd without a "
            f"subscriber: {rate['dockerd_cpu_pct_without_subscriber']:.2f} % of a core"
        )
    one = out["latency"].get("1")
    if one:
        add = one["added_from_ready_s"]
        drop = one["dropped_from_die_s"]
        targets.append(
            {
                "target": "remote worker-added p99 <= ready line + 1 s (interval 1 s)",
                "value": f"{add['p99']:.2f} s",
                "ok": add["n"] > 0 and add["p99"] <= 1.0,
            }
        )
        targets.append(
            {
                "target": "remote worker-dropped p99 <= container death + 2 s "
                "(interval 1 s)",
                "value": f"{drop['p99']:.2f} s",
                "ok": drop["n"] > 0 and drop["p99"] <= 2.0,
            }
        )
        clean = not (
            one["drops_missed"] or one["added_twice"] or one["dropped_unkilled"]
        )
        targets.append(
            {
                "target": "every remote task added once, every kill dropped, no flap",
                "value": "yes" if clean else "no",
                "ok": clean,
            }
        )
    loads = " ".join(f"{k} {v[0]:.1f}" for k, v in out.get("loadavg_before", {}).items())
    parts.append(
        f"swarm setup {out.get('setup_s')} s, teardown {out.get('teardown_s')} s; "
        f"load (1 min) before: {loads}; afterwards the Engine's swarm state is "
        f"{out.get('after', {}).get('swarm_state')!r}"
    )
    return "\n\n".join(parts)


if __name__ == "__main__":
    if sys.argv[1:2] == ["watch"] and len(sys.argv) >= 3:
        asyncio.run(_watch_main(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit(
            "usage: python3 swarm_latency.py watch NETWORK KEY=VALUE...  (in the "
            "subscriber's container; the section runs as scripts/bench.sh --only swarm)"
        )
