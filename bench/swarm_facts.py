"""What a Swarm manager tells about tasks on another node, measured on a real
two-node swarm (`tests/integration/multinode.py`).

Prints one JSON document: a ``GET /tasks`` entry, the labels of a task's
container, every task state transition the manager showed (polled every
50 ms), every event the manager's ``GET /events`` emitted, and the timings of
each scenario: service start, scale up, a remote task killed, task logs
through the manager, the other node drained, its Engine stopped and started.

Usage: ``python bench/swarm_facts.py [IMAGE]`` as root, with the machine's
Engine in no swarm. Not a test: it only observes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from multinode import Swarm  # noqa: E402
from multinode import UnixConnection  # noqa: E402
from multinode import two_node_swarm  # noqa: E402
from multinode import wait_for  # noqa: E402

TERMINAL = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}
"""Task states after which a task never runs again."""

READY = "wool-docker ready "
"""What the worker prints once its server accepts calls."""


class TaskWatch(threading.Thread):
    """Polls the manager's task list of one service; records each change."""

    FIELDS = ("State", "DesiredState", "Message", "Err", "ContainerID", "NodeID")

    def __init__(self, swarm: Swarm, service: str, interval: float = 0.05):
        super().__init__(daemon=True)
        self.swarm, self.service, self.interval = swarm, service, interval
        self.seen: dict[str, dict[str, Any]] = {}
        self.changes: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.polls = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            try:
                tasks = self.swarm.manager.tasks(service=self.service)
            except Exception as error:  # a poll during a transition; keep going
                self.changes.append({"t": now, "error": str(error)})
                tasks = []
            self.polls += 1
            for task in tasks:
                status = task["Status"]
                view = {
                    "State": status.get("State"),
                    "DesiredState": task.get("DesiredState"),
                    "Message": status.get("Message"),
                    "Err": status.get("Err"),
                    "ContainerID": (status.get("ContainerStatus") or {}).get(
                        "ContainerID", ""
                    )[:12],
                    "NodeID": task.get("NodeID", ""),
                }
                before = self.seen.get(task["ID"])
                if before != view:
                    self.seen[task["ID"]] = view
                    self.changes.append(
                        {"t": now, "task": task["ID"], "slot": task.get("Slot"), **view}
                    )
            time.sleep(self.interval)

    def first(self, since: float, **match: Any) -> float | None:
        """Seconds from ``since`` to the first change matching ``match``."""
        for change in self.changes:
            if change["t"] >= since and all(
                change.get(k) == v for k, v in match.items()
            ):
                return round(change["t"] - since, 3)
        return None


class EventWatch(threading.Thread):
    """The manager's whole event stream, each event with when it arrived."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []

    def run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append({"arrived": time.time(), **json.loads(line)})

    def since(self, moment: float, until: float | None = None) -> list[dict[str, Any]]:
        """Events that arrived in [moment, until), shortened."""
        out = []
        for event in self.events:
            if event["arrived"] < moment or (
                until is not None and event["arrived"] >= until
            ):
                continue
            attributes = event.get("Actor", {}).get("Attributes", {})
            out.append(
                {
                    "after": round(event["arrived"] - moment, 3),
                    "type": event.get("Type"),
                    "action": event.get("Action"),
                    "scope": event.get("scope"),
                    "attributes": attributes,
                }
            )
        return out

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def task_logs(swarm: Swarm, task: str) -> str:
    """The manager's ``GET /tasks/ID/logs`` of one task, demultiplexed."""
    status, body = swarm.manager.request(
        "GET", f"/tasks/{task}/logs?stdout=1&stderr=1&timestamps=1", timeout=30
    )
    if status != 200:
        return f"<{status} {body[:200]!r}>"
    text, at = [], 0
    while at + 8 <= len(body):  # stream frames: 8-byte header, then payload
        size = int.from_bytes(body[at + 4 : at + 8], "big")
        text.append(body[at + 8 : at + 8 + size].decode(errors="replace"))
        at += 8 + size
    return "".join(text)


def _unix_time(stamp: str) -> float:
    """An Engine timestamp (RFC 3339, nanoseconds, UTC) as Unix time."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
    return moment.timestamp() + float(f"0.{fraction or 0}")


def follow_until_ready(swarm: Swarm, task: str, out: dict[str, Any]) -> None:
    """Follow a task's logs through the manager until the ready line arrives;
    records when the stream opened and when each line arrived."""
    connection = UnixConnection(swarm.manager.socket, 120)
    connection.request(
        "GET", f"/tasks/{task}/logs?follow=1&stdout=1&stderr=1&timestamps=1"
    )
    response = connection.getresponse()
    out["status"], out["opened"], buffer = response.status, time.time(), b""
    while chunk := response.read1(65536):
        buffer += chunk
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            line = buffer[8 : 8 + size].decode(errors="replace")
            buffer = buffer[8 + size :]
            out.setdefault("lines", []).append((time.time(), line))
            if READY in line:
                connection.close()
                return


def remote_start(swarm: Swarm, *options: str) -> dict[str, Any]:
    """One task on the worker node: its states as the manager shows them, and
    when its ready line reaches a log stream opened on the manager at once."""
    begin = time.time()
    service = swarm.create_service(
        1, "--constraint", f"node.id=={swarm.worker.node_id}", *options
    )
    task = wait_for(
        lambda: next(iter(swarm.manager.tasks(service=service)), None),
        timeout=30,
        what="the task",
    )
    out: dict[str, Any] = {}
    follower = threading.Thread(
        target=follow_until_ready, args=(swarm, task["ID"], out), daemon=True
    )
    follower.start()
    states: list[tuple[float, str]] = []

    def probe() -> dict[str, Any] | None:
        current = swarm.manager.tasks(service=service)[0]
        state = current["Status"]["State"]
        if not states or states[-1][1] != state:
            states.append((round(time.time() - begin, 3), state))
        return current if state == "running" else None

    current = wait_for(probe, timeout=90, what="the task running", interval=0.05)
    seen_running = time.time()
    container = current["Status"]["ContainerStatus"]["ContainerID"]
    (inspected,) = json.loads(swarm.worker.out("container", "inspect", container))
    started = _unix_time(inspected["State"]["StartedAt"])
    follower.join(60)
    result: dict[str, Any] = {
        "states": states,
        "log_stream_status": out.get("status"),
        "log_stream_opened_after_create_s": round(out.get("opened", 0) - begin, 3),
        "running_seen_after_container_start_s": round(seen_running - started, 3),
        "status_timestamp_after_container_start_s": round(
            _unix_time(current["Status"]["Timestamp"]) - started, 3
        ),
    }
    ready = [(at, line) for at, line in out.get("lines", []) if READY in line]
    if ready:
        arrived, line = ready[0]
        stamp = _unix_time(line.split(" ", 1)[0])
        result["ready_line_after_container_start_s"] = round(stamp - started, 3)
        result["ready_line_at_manager_after_its_stamp_s"] = round(arrived - stamp, 3)
        result["ready_line_at_manager_minus_running_seen_s"] = round(
            arrived - seen_running, 3
        )
    swarm.remove_service(service)
    return result


def on_node(swarm: Swarm, watch: TaskWatch, node: str) -> list[str]:
    """Ids of the tasks of the watched service running on ``node``."""
    return [
        task
        for task, view in watch.seen.items()
        if view["NodeID"] == node
        and view["State"] == "running"
        and view["DesiredState"] == "running"
    ]


def running(swarm: Swarm, service: str, count: int, timeout: float = 90) -> float:
    begin = time.time()

    def probe() -> bool | None:
        tasks = swarm.manager.tasks(service=service, desired_state="running")
        states = [t["Status"]["State"] for t in tasks]
        return True if states == ["running"] * count else None

    wait_for(probe, timeout=timeout, what=f"{count} running tasks of {service}")
    return round(time.time() - begin, 3)


WATCHES: list[tuple[float, TaskWatch]] = []
"""Every task watch started, with its start: dumped even when a scenario fails."""


def main(facts: dict[str, Any]) -> None:
    image = sys.argv[1] if len(sys.argv) > 1 else "wool-docker-worker:dev"
    facts["image"] = image
    events = EventWatch()
    events.start()
    began = time.monotonic()
    with two_node_swarm(image, labels={"wool.docker.facts": "1"}) as swarm:
        facts["setup_s"] = round(time.monotonic() - began, 2)
        facts["setup_phases_s"] = {k: round(v, 2) for k, v in swarm.timings.items()}
        manager, worker = swarm.manager.node_id, swarm.worker.node_id
        facts["nodes"] = {"manager": manager, "worker": worker}
        scenarios: dict[str, Any] = {}
        facts["scenarios"] = scenarios

        # Start: 4 replicas, spread 2 + 2.
        t0 = time.time()
        service = swarm.create_service(4)
        watch = TaskWatch(swarm, service)
        watch.start()
        WATCHES.append((t0, watch))
        scenarios["create_4"] = {"all_running_s": running(swarm, service, 4)}
        tasks = swarm.manager.tasks(service=service)
        facts["task_entry"] = tasks[0]
        remote = next(t for t in tasks if t["NodeID"] == worker)
        container = remote["Status"]["ContainerStatus"]["ContainerID"]
        (inspected,) = json.loads(swarm.worker.out("container", "inspect", container))
        facts["remote_container_labels"] = inspected["Config"]["Labels"]
        started = inspected["State"]["StartedAt"]
        facts["remote_started_at"] = started
        facts["remote_task_status_timestamp"] = remote["Status"]["Timestamp"]
        first_running = next(
            c["t"]
            for c in watch.changes
            if c.get("task") == remote["ID"] and c.get("State") == "running"
        )
        facts["remote_first_seen_running_wall"] = first_running
        facts["task_swarm_labels_in_json"] = sorted(
            {k for k in json.dumps(tasks).split('"') if k.startswith("com.docker.swarm")}
        )
        scenarios["create_4"]["events"] = events.since(t0)

        # Logs of a remote task through the manager: until the ready line shows.
        t1 = time.time()
        logs = wait_for(
            lambda: (lambda text: text if READY in text else None)(
                task_logs(swarm, remote["ID"])
            ),
            timeout=30,
            what="the ready line in the remote task's logs",
        )
        scenarios["task_logs"] = {
            "first_ready_in_manager_logs_after_s": round(time.time() - t1, 3),
            "text": logs[-400:],
        }
        cli = subprocess.run(
            ["docker", "service", "logs", "--raw", "--no-task-ids", service],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        scenarios["task_logs"]["service_logs_lines"] = len(
            [line for line in (cli.stdout + cli.stderr).splitlines() if READY in line]
        )
        t2 = time.time()
        for _ in range(5):
            task_logs(swarm, remote["ID"])
        scenarios["task_logs"]["get_remote_logs_s_each"] = round(
            (time.time() - t2) / 5, 3
        )

        # Scale up 4 -> 6.
        t3 = time.time()
        swarm.manager.run("service", "scale", "--detach", f"{service}=6")
        scenarios["scale_6"] = {"all_running_s": running(swarm, service, 6)}
        time.sleep(1)  # let trailing events arrive before cutting the window
        scenarios["scale_6"]["events"] = events.since(t3)

        # A task on node 2 killed.
        victim = on_node(swarm, watch, worker)[0]
        victim_container = watch.seen[victim]["ContainerID"]
        t4 = time.time()
        swarm.worker.run("kill", victim_container)
        wait_for(
            lambda: (
                True
                if len(swarm.manager.tasks(service=service, desired_state="running"))
                == 6
                and all(
                    t["Status"]["State"] == "running"
                    for t in swarm.manager.tasks(
                        service=service, desired_state="running"
                    )
                )
                and watch.seen[victim]["State"] != "running"
                else None
            ),
            timeout=60,
            what="the killed task's replacement",
        )
        scenarios["kill_remote"] = {
            "victim_failed_s": watch.first(t4, task=victim, State="failed"),
            "victim_desired_shutdown_s": watch.first(
                t4, task=victim, DesiredState="shutdown"
            ),
            "replacement_running_s": round(time.time() - t4, 3),
        }
        time.sleep(1)
        scenarios["kill_remote"]["events"] = events.since(t4)

        # Node 2 drained, then made active again.
        remote_now = on_node(swarm, watch, worker)
        t5 = time.time()
        swarm.manager.run("node", "update", "--availability", "drain", worker)
        wait_for(
            lambda: (
                True
                if all(
                    watch.seen[t]["State"] in ("shutdown", "complete")
                    for t in remote_now
                )
                else None
            ),
            timeout=60,
            what="the drained node's tasks to shut down",
        )
        scenarios["drain"] = {
            "tasks": {
                t: {
                    "desired_shutdown_s": watch.first(
                        t5, task=t, DesiredState="shutdown"
                    ),
                    "state_shutdown_s": watch.first(t5, task=t, State="shutdown"),
                }
                for t in remote_now
            },
            "all_6_running_on_manager_s": running(swarm, service, 6),
        }
        time.sleep(1)
        scenarios["drain"]["events"] = events.since(t5)
        t6 = time.time()
        swarm.manager.run("node", "update", "--availability", "active", worker)
        time.sleep(2)
        scenarios["activate"] = {"events": events.since(t6)}
        # Activation does not rebalance: force an update so tasks spread again.
        swarm.manager.run("service", "update", "--detach", "--force", service)
        wait_for(
            lambda: True if len(on_node(swarm, watch, worker)) >= 2 else None,
            timeout=120,
            what="tasks back on the worker node",
        )
        running(swarm, service, 6, timeout=120)

        # Node 2's Engine stopped, then started.
        remote_now = on_node(swarm, watch, worker)
        t7 = time.time()
        stop_s = swarm.worker.stop()
        down = wait_for(
            lambda: True if swarm.nodes()[worker]["Status"]["State"] == "down" else None,
            timeout=120,
            what="node 2 down",
            interval=0.1,
        )
        assert down
        node_down_s = round(time.time() - t7, 3)
        with contextlib.suppress(Exception):
            running(swarm, service, 6, timeout=60)
        scenarios["stop_engine"] = {
            "sigterm_to_exit_s": round(stop_s, 3),
            "node_down_s": node_down_s,
            "tasks": {
                t: {
                    "changes": [
                        {**c, "t": round(c["t"] - t7, 3)}
                        for c in watch.changes
                        if c.get("task") == t and c["t"] >= t7
                    ]
                }
                for t in remote_now
            },
            "replacements_running_s": round(time.time() - t7, 3),
        }
        time.sleep(1)
        scenarios["stop_engine"]["events"] = events.since(t7)
        t8 = time.time()
        start_s = swarm.worker.start()
        ready_s = swarm.wait_ready()
        scenarios["start_engine"] = {
            "answers_s": round(start_s, 3),
            "node_ready_s": round(time.time() - t8, 3),
            "wait_ready_s": round(ready_s, 3),
        }
        time.sleep(3)
        scenarios["start_engine"]["events"] = events.since(t8)
        scenarios["start_engine"]["old_tasks_after"] = {
            t: [
                {**c, "t": round(c["t"] - t8, 3)}
                for c in watch.changes
                if c.get("task") == t and c["t"] >= t8
            ]
            for t in remote_now
        }
        # A remote task's start, with and without the image's healthcheck.
        watch.stopping.set()
        scenarios["remote_start_healthcheck"] = remote_start(swarm)
        scenarios["remote_start_no_healthcheck"] = remote_start(
            swarm, "--no-healthcheck"
        )
        t9 = time.monotonic()
    facts["teardown_s"] = round(time.monotonic() - t9, 2)
    facts["teardown_phases_s"] = round(swarm.timings.get("teardown", 0), 2)
    events.close()


def dump_watches(facts: dict[str, Any]) -> None:
    """Every task change the watches saw, relative to each watch's start."""
    for t0, watch in WATCHES:
        watch.stopping.set()
        watch.join()
        facts["task_polls"] = watch.polls
        facts["all_task_changes"] = [
            {**c, "t": round(c["t"] - t0, 3)} for c in watch.changes
        ]
        facts["states_seen"] = sorted(
            {c["State"] for c in watch.changes if "State" in c}
        )
        facts["desired_seen"] = sorted(
            {c["DesiredState"] for c in watch.changes if "DesiredState" in c}
        )


if __name__ == "__main__":
    results: dict[str, Any] = {}
    try:
        main(results)
    finally:
        dump_watches(results)
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(results, indent=1, default=str))
