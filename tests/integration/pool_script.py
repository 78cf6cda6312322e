"""A plain pool script, run in a fresh interpreter by the exit tests.

``python pool_script.py '<json>'`` with keys ``mode``, ``kind`` (``docker`` or
``local``), ``spawn``, ``image``, ``network``, ``labels``, ``name_prefix``. It
enters a pool, gathers ``2 * spawn`` CPU-bound routines, prints one JSON line
``{"hosts": [...]}`` naming the process that served each, and returns from
`asyncio.run` — nothing else: no forced exit, no extra cleanup. Modes add
what a real program leaves behind at exit:

- ``plain``: nothing.
- ``open-iteration``: a discovery iteration waiting for its next event.
- ``cancelled-start``: a `DockerWorker` start cancelled just before exit.
- ``sigint``: a long routine prints ``napping`` once it runs (on stdout for a
  local worker, through the ``wool_docker.worker`` logger on stderr for a
  container), then the script waits for the test's SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from typing import Any

import cloudpickle
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker


@wool.routine
async def burn(seconds: float) -> str:
    """Keep a CPU busy for ``seconds``; return who did it."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return f"{socket.gethostname()}/{os.getpid()}"


@wool.routine
async def nap(seconds: float) -> str:
    """Say ``napping`` on stdout, then sleep."""
    print("napping", flush=True)
    await asyncio.sleep(seconds)
    return socket.gethostname()


def pool(args: dict[str, Any]) -> wool.WorkerPool:
    """The pool under test: Docker workers with Docker discovery, or local ones."""
    if args["kind"] == "local":
        return wool.WorkerPool(spawn=args["spawn"])
    return wool.WorkerPool(
        spawn=args["spawn"],
        worker=lambda *tags, **kw: DockerWorker(
            *tags,
            image=args["image"],
            network=args["network"],
            labels=args["labels"],
            name_prefix=args["name_prefix"],
            **kw,
        ),
        discovery=DockerDiscovery(network=args["network"], labels=args["labels"]),
    )


async def main(args: dict[str, Any]) -> None:
    mode = args["mode"]
    async with pool(args):
        if mode == "sigint":
            # A container's output reaches the owner through logging.
            logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
            await nap(600)
            return
        hosts = await asyncio.gather(*(burn(0.2) for _ in range(2 * args["spawn"])))
        print(json.dumps({"hosts": hosts}), flush=True)
        if mode == "open-iteration":
            discovery = DockerDiscovery(network=args["network"], labels=args["labels"])
            iteration = aiter(discovery.subscriber)
            await anext(iteration)
            # Left waiting: asyncio.run cancels it on the way out.
            asyncio.ensure_future(anext(iteration))
        elif mode == "cancelled-start":
            worker = DockerWorker(
                image=args["image"],
                network=args["network"],
                labels=args["labels"],
                name_prefix=args["name_prefix"],
            )
            starting = asyncio.ensure_future(worker.start())
            # Cancel once the container exists, while it is still starting.
            await asyncio.sleep(args.get("cancel_after", 0.3))
            starting.cancel()


if __name__ == "__main__":
    # Routines defined in __main__ travel by value to the worker processes.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    asyncio.run(main(json.loads(sys.argv[1])))
