"""One owner of a pool, run in its own interpreter by the two-owner tests.

``python owner_script.py '<json>'`` with keys ``image``, ``network``,
``labels`` (the test's labels for its containers), ``name_prefix``, ``shared``
(the discovery's opt-in), ``expect`` (how many workers serve on the network in
all, every owner's and the hand-run ones) and ``calls``. Talks to the test on
its standard streams, one JSON line each way:

1. enters a pool of 2 `DockerWorker`s with ``DockerDiscovery(network=...)``
   (default labels), prints ``{"owner": <its owner token>}``;
2. waits for ``go`` (every owner's pool is up), then for a ``shared=True``
   discovery of this process to see ``expect`` workers: all of them serve;
3. gathers ``calls`` routines and ``calls`` nested routines (each dispatching
   ``calls`` more from inside its container), prints
   ``{"hosts": [...], "nested": [[host, [hosts reached]], ...]}``;
4. waits for ``exit`` (so its workers serve while the others run), then exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import nested
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import _native

TIMEOUT: float = 120.0
"""Seconds any one step may take."""


async def line() -> str:
    """The next line the test sends."""
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


async def all_serve(network: str, expect: int) -> None:
    """Wait until this process discovers ``expect`` workers on ``network``,
    whoever owns them."""
    serving: set[str] = set()
    async for event in DockerDiscovery(network=network, shared=True).subscriber:
        uid = str(event.metadata.uid)
        if event.type == "worker-dropped":
            serving.discard(uid)
        else:
            serving.add(uid)
        if len(serving) >= expect:
            return


async def main(args: dict[str, Any]) -> None:
    network = args["network"]
    pool = wool.WorkerPool(
        spawn=2,
        worker=lambda *tags, **kw: DockerWorker(
            *tags,
            image=args["image"],
            network=network,
            labels=args["labels"],
            name_prefix=args["name_prefix"],
            log_output=False,
            **kw,
        ),
        discovery=DockerDiscovery(network=network, shared=args["shared"]),
    )
    async with pool:
        print(json.dumps({"owner": _native.owner_token()}), flush=True)
        if await line() != "go":
            return
        async with asyncio.timeout(TIMEOUT):
            await all_serve(network, args["expect"])
            calls = args["calls"]
            hosts = await asyncio.gather(*(nested.hostname() for _ in range(calls)))
            spread = await asyncio.gather(*(nested.spread(calls) for _ in range(calls)))
        print(json.dumps({"hosts": sorted(set(hosts)), "nested": spread}), flush=True)
        await line()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
