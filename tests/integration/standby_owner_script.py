"""An owner of a `Standby` and a pool from it, run in its own interpreter.

``python standby_owner_script.py '<json>'`` with keys ``image``, ``network``,
``labels`` (the test's labels) and ``name_prefix``. Opens a `Standby` of 2
that refills on claim, waits until it is filled, enters a pool of one worker
claimed from it, waits until the standby is filled again (2 parked, 1
claimed), prints ``{"claimed": <the worker's container name>}`` and waits for
the test to kill it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import Standby

TIMEOUT: float = 120.0
"""Seconds the set-up may take."""


async def main(args: dict[str, Any]) -> None:
    workers: list[DockerWorker] = []

    async with Standby(
        args["image"],
        args["network"],
        size=2,
        refill="claim",
        labels=args["labels"],
        name_prefix=args["name_prefix"],
        log_output=False,
    ) as standby:

        def factory(*tags: str, **kw: Any) -> DockerWorker:
            worker = standby.worker(*tags, **kw)
            workers.append(worker)
            return worker

        async with asyncio.timeout(TIMEOUT):
            await standby.filled()
        pool = wool.WorkerPool(
            spawn=1,
            quorum=1,
            worker=factory,
            discovery=DockerDiscovery(network=args["network"], labels=args["labels"]),
        )
        async with pool:
            async with asyncio.timeout(TIMEOUT):
                await standby.filled()
            (worker,) = workers
            print(json.dumps({"claimed": worker.container}), flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
