"""An owner of Swarm workers, run by `test_swarm_worker` in a container on the
overlay on the manager (where such an owner runs).

``python3 swarm_owner_script.py '<json>'`` with keys ``image``, ``network``,
``mode`` and the mode's own. Talks to the test on its standard streams, one
JSON line each way.

- ``errors``: starts a `SwarmWorker` for each case of ``cases`` (name to
  keywords) and prints ``{"errors": {name: [type, message]}}``.
- ``cancel``: for each of ``delays``, starts a worker and cancels the start
  that many seconds later; prints ``{"cancelled": {delay: outcome}}``, where
  the outcome is ``"cancelled"`` or ``"started"`` (the start won the race and
  the worker was then stopped).
- ``hold``: starts ``count`` workers with ``keywords`` (each with its own
  ``placements`` constraints, where given), prints ``{"workers":
  [{"service", "node", "address", "uid"}]}``; with ``watch``, a subscriber of
  this process (subscribed before the starts) then follows discovery until
  every worker was added and ``window`` seconds more, and it prints ``{"events":
  [[type, uid, seconds after its start returned], ...]}``; with ``attack`` has a
  routine use its own lifeline token and flood the owner's lifeline port, and
  prints ``{"attack": ..., "after": <hostname served by a call afterwards>}``;
  then waits for ``exit`` (or to be killed) and stops its workers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import wool

from wool_docker import DockerDiscovery
from wool_docker import SwarmWorker

TIMEOUT: float = 120.0
"""Seconds any one step may take."""


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


@wool.routine
async def hostname() -> str:
    import socket

    return socket.gethostname()


@wool.routine
async def hold_idle(count: int, seconds: float) -> int:
    """Hold ``count`` connections to the owner's lifeline that never send a
    byte, for ``seconds``; how many connected."""
    import socket

    with open("/proc/self/environ", "rb") as f:
        environ = dict(
            item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item
        )
    host, port = environ[b"WOOL_DOCKER_LIFELINE"].decode().rsplit(":", 1)
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection((host, int(port)), timeout=10))
        except OSError:
            break
    await asyncio.sleep(seconds)
    for connection in held:
        connection.close()
    return len(held)


@wool.routine
async def attack_lifeline() -> dict[str, Any]:
    """Replay this worker's own (used) lifeline token, then flood the port."""
    import socket

    with open("/proc/self/environ", "rb") as f:
        environ = dict(
            item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item
        )
    address = environ[b"WOOL_DOCKER_LIFELINE"].decode()
    token = environ[b"WOOL_DOCKER_LIFELINE_TOKEN"]
    host, port = address.rsplit(":", 1)
    replay = socket.create_connection((host, int(port)), timeout=10)
    replay.sendall(token + b"\n")
    replay.settimeout(15)
    closed = replay.recv(1) == b""
    replay.close()
    idle = []
    for _ in range(200):
        connection = socket.create_connection((host, int(port)), timeout=10)
        connection.sendall(b"x" * 4096)
        idle.append(connection)
    for connection in idle:
        connection.close()
    return {"replay_closed": closed, "flooded": len(idle)}


async def errors(config: dict[str, Any]) -> None:
    found = {}
    for name, keywords in config["cases"].items():
        keywords = {"network": config["network"], **keywords}
        worker = SwarmWorker(image=keywords.pop("image", config["image"]), **keywords)
        try:
            await worker.start(timeout=config.get("timeout", 60.0))
        except Exception as e:
            found[name] = [type(e).__name__, str(e)]
        else:
            await worker.stop()
            found[name] = ["started", ""]
    emit({"errors": found})


async def cancel(config: dict[str, Any]) -> None:
    outcomes = {}
    for delay in config["delays"]:
        worker = SwarmWorker(image=config["image"], network=config["network"])
        start = asyncio.ensure_future(worker.start(timeout=TIMEOUT))
        await asyncio.sleep(delay)
        start.cancel()
        try:
            await start
        except asyncio.CancelledError:
            outcomes[str(delay)] = "cancelled"
        else:
            outcomes[str(delay)] = "started"
            await worker.stop()
    emit({"cancelled": outcomes})


async def hold(config: dict[str, Any]) -> None:
    keywords = config.get("keywords", {})
    # Per worker, where given: its placement constraints.
    placements = config.get("placements") or [()] * config["count"]
    workers = [
        SwarmWorker(
            image=config["image"],
            network=config["network"],
            constraints=placement,
            **keywords,
        )
        for placement in placements
    ]
    events: list[tuple[str, str, float]] = []
    started: dict[str, float] = {}
    watching = None
    if config.get("watch"):
        subscriber = DockerDiscovery(network=config["network"]).subscriber

        async def watch() -> None:
            async for event in subscriber:
                events.append(
                    (str(event.type), str(event.metadata.uid), time.monotonic())
                )

        watching = asyncio.ensure_future(watch())

    async def start(worker: SwarmWorker) -> None:
        await worker.start()
        started[str(worker.uid)] = time.monotonic()

    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(start(w) for w in workers))
    emit(
        {
            "workers": [
                {
                    "service": w.service,
                    "node": w.node,
                    "address": w.address,
                    "uid": str(w.uid),
                }
                for w in workers
            ]
        }
    )
    if watching is not None:
        uids = set(started)
        try:
            async with asyncio.timeout(TIMEOUT / 2):
                while not uids <= {u for kind, u, _ in events if kind == "worker-added"}:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass  # The events say what is missing.
        else:
            # Past the polls of the manager and the grace of an own remote
            # worker (10 s): none may drop it or announce it again.
            await asyncio.sleep(config.get("window", 12.0))
        watching.cancel()
        emit(
            {
                "events": [
                    [kind, uid, at - started.get(uid, at)] for kind, uid, at in events
                ]
            }
        )
    if config.get("attack"):
        discovery = DockerDiscovery(network=config["network"])
        pool = wool.WorkerPool(discovery=discovery.subscriber)
        async with pool:
            attack = await attack_lifeline()
            after = await hostname()
            # A new worker starts while a routine holds idle connections to
            # the owner's lifeline, far past one address's handshakes.
            other = SwarmWorker(image=config["image"], network=config["network"])
            holding = asyncio.ensure_future(hold_idle(200, 8.0))
            await asyncio.sleep(1.0)
            async with asyncio.timeout(TIMEOUT):
                await other.start()
            await other.stop()
            held = await holding
        emit({"attack": attack, "after": after, "held": held, "started": True})
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.gather(*(w.stop() for w in workers))
    emit({"stopped": True})


async def main() -> None:
    config = json.loads(sys.argv[1])
    modes = {"errors": errors, "cancel": cancel, "hold": hold}
    await modes[config["mode"]](config)


if __name__ == "__main__":
    import cloudpickle

    # The routines live in __main__, which the workers do not have.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    asyncio.run(main())
