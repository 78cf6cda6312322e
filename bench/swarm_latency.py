"""Section ``swarm``: discovery of another node's Swarm tasks on a real two-node
swarm (`tests/integration/multinode.py`), latency and Engine load; root, the
machine's Engine in no swarm. Method: bench/README.md, "Swarm across nodes:
discovery latency and Engine load".

The subscriber runs in a container on the overlay, as ``python3 -m
bench.swarm_latency watch NETWORK KEY=VALUE...``: one JSON line per event, until
its standard input ends; it talks to the manager's Engine through a
`CountingProxy`, whose ``GET /tasks`` stamps are the polls.
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

from . import common
from .common import progress
from .report import median
from .report import rfc3339_ns
from .report import summary
from .report import table
from .report import target

if TYPE_CHECKING:
    from tests.integration.multinode import Swarm

SERVICE_LABEL: Final[str] = "com.docker.swarm.service.name"
ENGINE_SOCKET: Final[str] = "/var/run/docker.sock"

START_TIMEOUT: Final[float] = 240.0
"""Seconds a step of task starts on the second Engine may take (vfs: a start
spends 15-22 s preparing alone; several at once on 2 cores, longer)."""

DROP_TIMEOUT: Final[float] = 30.0
"""Seconds a killed task's worker-dropped may take before it counts as missed."""

TRAEFIK_REFRESH_S: Final[float] = 15.0
"""Traefik's Swarm provider default ``refreshSeconds``."""


# Inside the container ------------------------------------------------------------


async def _watch(network: str, labels: dict[str, str]) -> None:
    from wool_docker import DockerDiscovery

    print(json.dumps({"type": "subscribed", "t": time.time()}), flush=True)
    async for event in DockerDiscovery(network=network, labels=labels).subscriber:
        t = time.time()
        uid, address = str(event.metadata.uid), event.metadata.address
        record = {"type": str(event.type), "uid": uid, "address": address, "t": t}
        print(json.dumps(record), flush=True)


async def _watch_main(network: str, pairs: list[str]) -> None:
    watch = asyncio.ensure_future(_watch(network, dict(p.split("=", 1) for p in pairs)))
    await asyncio.to_thread(sys.stdin.read)
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch


# On the host ---------------------------------------------------------------------


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
        service: str,
        interval: float,
        engine_socket: str,
        log: Path,
    ):
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        options = ["-v", f"{engine_socket}:/var/run/docker.sock"]
        # The counting proxy's socket is root's alone: a harness privilege.
        options += ["--user", "0", "-e", f"WOOL_DOCKER_SWARM_INTERVAL={interval:g}"]
        args = common.in_container(
            swarm.image, name, run_id, swarm.overlay, options, "swarm_latency", "watch"
        )
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [*args, swarm.overlay, f"{SERVICE_LABEL}={service}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda es: any(e["type"] == "subscribed" for e in es), 60, "subscribe")
        self.container = common.cli("inspect", "--format", "{{.Id}}", name).strip()
        if not self.container:
            raise RuntimeError(f"the subscriber's container {name} is not there")

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

    def uids(self, kind: str) -> list[str]:
        return [e["uid"] for e in self.events if e["type"] == kind]

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
            ["docker", "-H", host, "events", "--filter", "type=container"]
            + ["--format", "{{json .}}"],
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
    opaque, and is said so); answers pass through untouched. Lives in a
    temporary directory of its own.
    """

    def __init__(self, run_id: str, upstream: str = ENGINE_SOCKET):
        self.directory = Path(tempfile.mkdtemp(prefix=f"wdb-{run_id}-proxy-"))
        self.path, self.upstream = self.directory / "docker.sock", upstream
        self.requests: list[tuple[float, str, str]] = []
        self.opaque: list[tuple[float, str]] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        os.chmod(self.path, 0o666)
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
                    method, path = (line.split(" ") + ["", ""])[:2]
                    with self.lock:
                        self.requests.append((time.time(), method, path))
                    fields = {
                        k.strip().lower(): v.strip()
                        for k, _, v in (h.partition(":") for h in headers)
                    }
                    chunked = "chunked" in fields.get("transfer-encoding", "").lower()
                    if chunked or "upgrade" in fields:
                        opaque = True
                        with self.lock:
                            self.opaque.append((time.time(), path))
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
        with contextlib.suppress(OSError):
            self.directory.rmdir()


def endpoint(path: str) -> str:
    """``/v1.41/tasks?filters=…`` → ``/tasks``; ids in paths → ``{id}``."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts and parts[0].startswith("v1."):
        parts = parts[1:]
    known = {"json", "logs", "events", "info", "version", "_ping"}
    return "/" + "/".join(
        "{id}" if i == 1 and part not in known else part for i, part in enumerate(parts)
    )


def dockerd_cpu() -> float:
    """CPU seconds the machine's dockerd has used so far."""
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def container_cpu(container: str) -> float:
    """CPU seconds the processes of one container have used (those alive)."""
    prefix = f"container {container[:64]}:"
    return sum(
        c for name, _, c in common.process_cpu().values() if name.startswith(prefix)
    )


def ms_summary(values: list[float]) -> dict[str, Any]:
    s = summary(values)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}


class Tasks:
    """The remote task containers of one service, each described once."""

    def __init__(self, swarm: Swarm, service: str):
        self.swarm, self.service = swarm, service
        self.by_uid: dict[str, dict[str, Any]] = {}

    def refresh(self) -> None:
        for task in self.swarm.manager.tasks(service=self.service):
            cid = task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
            if cid and uid_of(cid) not in self.by_uid:
                entry = {
                    "container": cid,
                    "task": task["ID"],
                    "node": task.get("NodeID"),
                }
                self.by_uid[uid_of(cid)] = entry

    def describe(self, uid: str) -> dict[str, Any]:
        """StartedAt and the ready line's stamp from the second Engine."""
        if uid not in self.by_uid:
            self.refresh()
        entry = self.by_uid[uid]
        if "started" in entry:
            return entry
        cid = entry["container"]
        (inspected,) = json.loads(self.swarm.worker.out("container", "inspect", cid))
        entry["started"] = rfc3339_ns(inspected["State"]["StartedAt"]) / 1e9
        logs = self.swarm.worker.run("logs", "--timestamps", cid, check=False)
        lines = (logs.stdout + logs.stderr).splitlines()
        ready = [line for line in lines if common.READY_PREFIX in line]
        # The timestamp ``docker logs --timestamps`` puts before a line.
        entry["ready"] = rfc3339_ns(ready[0].split(" ", 1)[0]) / 1e9 if ready else None
        return entry


def measure_latency(
    swarm: Swarm,
    run_id: str,
    interval: float,
    plan: dict[str, Any],
    kills: int,
    log: Path,
) -> dict[str, Any]:
    """Remote starts and kills; every event of the subscriber against the Engine."""
    on_node = plan["swarm_on_node"]
    service = swarm.create_service(0, "--constraint", f"node.id=={swarm.worker.node_id}")
    tasks = Tasks(swarm, service)
    engine_events = EngineEvents(swarm.worker.host)
    engine_events.start()
    # Through the counting proxy too: its GET /tasks stamps are the polls.
    proxy = CountingProxy(run_id)
    name = f"wdb-{run_id}-swatch-lat{interval:g}"
    watcher = Watcher(swarm, run_id, name, service, interval, str(proxy.path), log)
    killed: dict[str, dict[str, float]] = {}
    began = time.time()
    try:
        for goal in range(plan["swarm_step"], on_node + 1, plan["swarm_step"]):
            swarm.manager.run("service", "scale", "--detach", f"{service}={goal}")
            watcher.wait_live(goal, START_TIMEOUT, f"{goal} remote tasks added")
            progress(f"swarm interval {interval:g} s: {goal} remote tasks added")
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
        swarm.remove_service(service, timeout=300)
        engine_events.close()
    polls = [t for t, _, path in proxy.requests if endpoint(path) == "/tasks"]
    gaps = [(a, b - a) for a, b in zip(polls, polls[1:], strict=False)]
    added_uids = watcher.uids("worker-added")
    samples: list[dict[str, Any]] = []
    for uid in dict.fromkeys(added_uids):
        entry = tasks.by_uid.get(uid, {})
        sample = {"uid": uid, **entry, "added": watcher.first("worker-added", uid)}
        if uid in killed:
            sample["kill_cmd"] = killed[uid]["cmd"]
            sample["died"] = engine_events.seen.get((entry.get("container", ""), "die"))
            sample["dropped"] = watcher.first("worker-dropped", uid, killed[uid]["cmd"])
        samples.append(sample)
    dying = [
        (s["died"], s["dropped"]) for s in samples if s.get("died") and s.get("dropped")
    ]

    def deltas(end: str, start: str) -> dict[str, Any]:
        pairs = [(s.get(end), s.get(start)) for s in samples]
        return ms_summary([e - b for e, b in pairs if e is not None and b is not None])

    return {
        "service": service,
        "began": began,
        "samples": samples,
        "events": watcher.events,
        "added_from_start_s": deltas("added", "started"),
        "added_from_ready_s": deltas("added", "ready"),
        "ready_from_start_s": deltas("ready", "started"),
        "dropped_from_die_s": deltas("dropped", "died"),
        "dropped_from_kill_cmd_s": deltas("dropped", "kill_cmd"),
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
        "dropped_unkilled": sorted(set(watcher.uids("worker-dropped")) - killed.keys()),
    }


def request_costs(swarm: Swarm, repeats: int = 20) -> dict[str, Any]:
    """What one poll's requests cost the manager, timed from the host."""
    running = urllib.parse.quote(json.dumps({"desired-state": ["running"]}))
    out: dict[str, Any] = {}
    for name, path in (
        ("GET /tasks (desired-state=running)", f"/tasks?filters={running}"),
        ("GET /nodes", "/nodes"),
        ("GET /services", "/services"),
    ):
        times, size = [], 0
        for _ in range(repeats):
            begin = time.perf_counter()
            _, body = swarm.manager.request("GET", path)
            times.append(time.perf_counter() - begin)
            size = len(body)
        out[name] = {"median_ms": round(median(times) * 1e3, 2), "bytes": size}
    return out


def measure_rate(swarm: Swarm, run_id: str, plan: dict[str, Any], log: Path) -> dict:
    """One idle subscriber per poll period, through the counting proxy."""
    from tests.integration.multinode import wait_for

    idle_seconds = plan["swarm_idle_seconds"]
    service = swarm.create_service(4, "--replicas-max-per-node", "2")
    out: dict[str, Any] = {"service": service, "by_interval": {}}
    try:

        def running() -> list[dict[str, Any]] | None:
            tasks = swarm.manager.tasks(service=service, desired_state="running")
            states = [t["Status"]["State"] for t in tasks]
            return tasks if states == ["running"] * 4 else None

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
        cpu = 100 * (dockerd_cpu() - cpu0) / (time.time() - t0)
        out["dockerd_cpu_pct_without_subscriber"] = round(cpu, 3)
        for interval in plan["swarm_intervals"]:
            proxy, watcher = CountingProxy(run_id), None
            try:
                name = f"wdb-{run_id}-swatch-idle{interval:g}"
                watcher = Watcher(
                    swarm, run_id, name, service, interval, str(proxy.path), log
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
                        [round(t - start, 3), m, p]
                        for t, m, p in proxy.requests
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
    finally:
        swarm.remove_service(service, timeout=300)
    return out


def section(run: common.Run, wait_for_engine: float = 900.0) -> dict[str, Any]:
    """The whole section: the swarm up, latency per interval, load, the swarm down."""
    from tests.integration.multinode import MANAGER_HOST
    from tests.integration.multinode import Engine
    from tests.integration.multinode import two_node_swarm

    plan = run.plan
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
    log = common.RESULTS_DIR / f"swarm-{run.id}-subscribers.log"
    out["subscriber_log"] = str(log.relative_to(common.REPO_DIR))
    begin = time.monotonic()
    with two_node_swarm(
        common.IMAGE, name_prefix=f"wdb-{run.id}", labels={common.BENCH_LABEL: run.id}
    ) as swarm:
        out["setup_s"] = round(time.monotonic() - begin, 1)
        progress(f"swarm: two-node swarm up in {out['setup_s']} s")
        for interval, count in zip(
            plan["swarm_intervals"], plan["swarm_kills"], strict=True
        ):
            out["loadavg_before"][f"latency {interval:g}"] = os.getloadavg()
            out["latency"][f"{interval:g}"] = measure_latency(
                swarm, run.id, interval, plan, count, log
            )
        out["loadavg_before"]["rate"] = os.getloadavg()
        out["rate"] = measure_rate(swarm, run.id, plan, log)
        out["loadavg_end"] = os.getloadavg()
        mark = time.monotonic()
    out["teardown_s"] = round(time.monotonic() - mark, 1)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    out["after"] = {"swarm_state": manager.swarm_state(), "netns": netns.stdout.split()}
    return out


def traefik(tasks: int, services: int = 1) -> dict[str, Any]:
    """Traefik's Swarm provider at its defaults, from its source (v3
    ``pkg/provider/docker/pswarm.go``): every ``refreshSeconds`` (15 s) it lists
    services, asks the version, lists swarm networks, then for each service (not
    ``lbswarm``) lists its tasks with desired state running, and inspects the node
    of each such task; it uses tasks in state ``running`` only, and takes no
    events in Swarm mode."""
    per_tick = 3 + services + tasks
    per_s = round(per_tick / TRAEFIK_REFRESH_S, 3)
    return {"per_tick": per_tick, "per_s": per_s, "refresh_s": TRAEFIK_REFRESH_S}


def _fmt(s: dict[str, Any]) -> list[Any]:
    if not s.get("n"):
        return [0, "-", "-", "-"]
    return [s["n"], *(f"{s[k]:.2f}" for k in ("median", "p99", "max"))]


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
        counts = (
            f"  kills {lat['kills']}, drops missed {len(lat['drops_missed'])}, "
            f"added twice {len(lat['added_twice'])}, dropped without a kill "
            f"{len(lat['dropped_unkilled'])}"
        )
        rows.append([f"{interval} s", counts, "", "", "", ""])
    parts = [
        table(
            "SWARM REMOTE TASKS: latency (s), subscriber in a container on the overlay",
            "interval, from -> to, n, p50, p99, max",
            rows,
        )
    ]
    if rate := out.get("rate"):
        remote = rate["tasks_per_node"]["worker"]
        t = traefik(4)
        rows = []
        for interval, r in rate["by_interval"].items():
            by = ", ".join(f"{k} {v}" for k, v in r["by_endpoint"].items())
            row = [
                f"wool-docker, interval {interval} s",
                r["requests"],
                f"{r['per_s']:.2f}",
            ]
            row += [f"{r['dockerd_cpu_pct']:.2f}", f"{r['subscriber_cpu_pct']:.2f}", by]
            rows.append(row)
        window = next(iter(rate["by_interval"].values()))["window_s"]
        row = ["Traefik swarm provider, 15 s (computed)", round(t["per_s"] * window)]
        row += [f"{t['per_s']:.2f}", "", ""]
        rows.append([*row, "per tick: services, version, networks, 1 tasks, 4 nodes/ID"])
        parts.append(
            table(
                f"SWARM ENGINE LOAD: one idle subscriber, service of 4 tasks "
                f"({4 - remote} manager + {remote} worker), {window:.0f} s window",
                ["who", "requests", "req/s", "dockerd %", "subscr. %", "by endpoint"],
                rows,
            )
        )
        costs = ", ".join(
            f"{k} {v['median_ms']} ms / {v['bytes']} B" for k, v in rate["costs"].items()
        )
        parts.append(
            f"per request (host, median of 20): {costs}; dockerd without a "
            f"subscriber: {rate['dockerd_cpu_pct_without_subscriber']:.2f} % of a core"
        )
    if one := out["latency"].get("1"):
        add, drop = one["added_from_ready_s"], one["dropped_from_die_s"]
        target(
            targets,
            "remote worker-added p99 <= ready line + 1 s (interval 1 s)",
            f"{add['p99']:.2f} s",
            add["n"] > 0 and add["p99"] <= 1.0,
        )
        target(
            targets,
            "remote worker-dropped p99 <= container death + 2 s (interval 1 s)",
            f"{drop['p99']:.2f} s",
            drop["n"] > 0 and drop["p99"] <= 2.0,
        )
        clean = not (
            one["drops_missed"] or one["added_twice"] or one["dropped_unkilled"]
        )
        name = "every remote task added once, every kill dropped, no flap"
        target(targets, name, "yes" if clean else "no", clean)
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
            "usage: python3 -m bench.swarm_latency watch NETWORK KEY=VALUE...  (in the "
            "subscriber's container; the section runs as scripts/bench.sh --only swarm)"
        )
