"""Dispatch nested routines to a Swarm service's tasks and print where they ran.

Run inside a container on the service's overlay, with ``nested.py`` beside it:
``python3 nested_script.py NETWORK SERVICE CALLS ROUNDS``: ROUNDS rounds of
CALLS calls one after another, each dispatching CALLS calls of its own. Prints
one JSON object: ``{"spread": [[host, [hosts its nested calls reached]], ...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

import nested
import wool

from wool_docker import DockerDiscovery


async def main() -> None:
    network, service = sys.argv[1], sys.argv[2]
    calls, rounds = int(sys.argv[3]), int(sys.argv[4])
    discovery = DockerDiscovery(
        network=network, labels={"com.docker.swarm.service.name": service}
    )
    async with wool.WorkerPool(discovery=discovery.subscriber):
        async with asyncio.timeout(120):
            # One call at a time: wool's round-robin then puts one on each task.
            spread = [await nested.spread(calls) for _ in range(calls * rounds)]
    print(json.dumps({"spread": spread}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
