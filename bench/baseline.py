"""Section 5's baseline: the same label subscriber in plain Python with aiodocker.

Written the way one would without wool-docker, and not a strawman: the event
stream is opened with ``since`` taken before the listing (so nothing falls
between list and stream), the Engine filters events by label *and* action, a
listed container that reports healthy is admitted from the listing alone, and
every new container is admitted concurrently in its own task (inspect for its
address, then its log stream followed until the ready line). It has no
reconnect logic: the workloads here never break the stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiodocker

from .common import ready_line

STOP_SIGNALS = {"2", "9", "15", "SIGINT", "SIGKILL", "SIGTERM", "INT", "KILL", "TERM"}
ACTIONS = "start kill die stop pause unpause oom destroy health_status".split()


class AiodockerSubscriber:
    """Async iterator of ``(kind, record)`` for running containers with ``labels``.

    ``kind`` is ``worker-added`` or ``worker-dropped``; a record is a dict with
    ``id``, ``name``, ``address`` and ``observed_ns`` (the Engine's time of the
    event or log line behind it, 0 from the listing). Pass ``docker`` to share one
    client (its HTTP connection pool) between subscriptions, one at a time: the
    client's event stream is the subscription's.
    """

    def __init__(
        self,
        labels: Mapping[str, str],
        network: str,
        docker: aiodocker.Docker | None = None,
    ):
        self._labels = [f"{k}={v}" for k, v in labels.items()]
        self._network = network
        self._owned = docker is None
        self._docker = docker
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._announced: dict[str, dict[str, Any]] = {}
        self._admitting: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AiodockerSubscriber:
        if self._docker is None:
            self._docker = aiodocker.Docker()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        tasks = [t for t in (self._task, *self._admitting.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._docker is not None:
            await self._docker.events.stop()
            if self._owned:
                await self._docker.close()

    def __aiter__(self) -> AiodockerSubscriber:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        if self._task is not None and self._task.done():
            self._task.result()  # surface a failed stream
        return await self._queue.get()

    async def _run(self) -> None:
        assert self._docker is not None
        since = time.time()
        events = self._docker.events.subscribe(
            filters=json.dumps(
                {"type": ["container"], "label": self._labels, "event": ACTIONS}
            ),
            since=f"{since:.9f}",
        )
        listed = await self._docker.containers.list(
            filters=json.dumps({"label": self._labels})
        )
        for container in listed:
            info = container._container
            if "(healthy)" in info.get("Status", ""):
                self._announce(info["Id"], info, 0)
            elif "(unhealthy)" not in info.get("Status", ""):
                self._admit(info["Id"], since=0, info=info)
        while True:
            event = await events.get()
            if event is None:
                raise ConnectionError("the Engine closed the event stream")
            self._on_event(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        cid = event.get("id") or event.get("Actor", {}).get("ID", "")
        action: str = event.get("Action") or event.get("status", "")
        at = int(event.get("timeNano", 0))
        if action == "start":
            # A second early: the ready line can be stamped just before the
            # start event, and ``since`` counts whole seconds.
            self._admit(cid, since=at // 1_000_000_000 - 1)
        elif action == "health_status: healthy":
            self._admit(cid, since=0, healthy_at=at)
        elif action == "kill":
            signal = event.get("Actor", {}).get("Attributes", {}).get("signal")
            if signal is None or signal in STOP_SIGNALS:
                self._retract(cid, at)
        elif action in ("die", "stop", "pause", "oom", "destroy") or action.startswith(
            "health_status: unhealthy"
        ):
            self._retract(cid, at)
        elif action == "unpause":
            self._admit(cid, since=0)

    def _admit(
        self,
        cid: str,
        since: int,
        info: dict[str, Any] | None = None,
        healthy_at: int | None = None,
    ) -> None:
        if cid in self._announced or cid in self._admitting:
            return
        task = asyncio.create_task(self._admission(cid, since, info, healthy_at))
        self._admitting[cid] = task
        task.add_done_callback(lambda _: self._admitting.pop(cid, None))

    async def _admission(
        self,
        cid: str,
        since: int,
        info: dict[str, Any] | None,
        healthy_at: int | None,
    ) -> None:
        assert self._docker is not None
        container = self._docker.containers.container(cid)
        try:
            if info is None:
                info = await container.show()
            if healthy_at is not None:
                self._announce(cid, info, healthy_at)
                return
            # Follow the output until the worker says it serves.
            stream = container.log(
                stdout=True, follow=True, timestamps=True, since=since
            )
            if (at := await ready_line(stream)) is not None:
                self._announce(cid, info, at)
        except aiodocker.DockerError:
            return  # gone already

    def _announce(self, cid: str, info: dict[str, Any], at: int) -> None:
        networks = info.get("NetworkSettings", {}).get("Networks") or {}
        network = networks.get(self._network)
        if network is None or not network.get("IPAddress"):
            return
        labels = info.get("Labels") or info.get("Config", {}).get("Labels") or {}
        name = info.get("Name") or (info.get("Names") or [""])[0]
        record = {
            "id": cid,
            "name": name.lstrip("/"),
            "address": f"{network['IPAddress']}:{labels.get('wool.port', '50051')}",
            "observed_ns": at,
        }
        self._announced[cid] = record
        self._queue.put_nowait(("worker-added", record))

    def _retract(self, cid: str, at: int) -> None:
        task = self._admitting.pop(cid, None)
        if task is not None:
            task.cancel()
        record = self._announced.pop(cid, None)
        if record is not None:
            self._queue.put_nowait(("worker-dropped", {**record, "observed_ns": at}))
