"""Print a `DockerDiscovery` subscriber's events, one JSON object per line.

Run inside a container on the workers' network (the tests mount it there):
``python3 watch_script.py NETWORK KEY=VALUE...``. Runs until its standard input
ends, then exits 0.
"""

from __future__ import annotations

import asyncio
import json
import sys

from wool_docker import DockerDiscovery


async def _watch(network: str, labels: dict[str, str]) -> None:
    async for event in DockerDiscovery(network=network, labels=labels).subscriber:
        record = {
            "type": event.type,
            "uid": str(event.metadata.uid),
            "address": event.metadata.address,
        }
        print(json.dumps(record), flush=True)


async def main() -> None:
    network, *pairs = sys.argv[1:]
    labels = dict(pair.split("=", 1) for pair in pairs)
    watch = asyncio.ensure_future(_watch(network, labels))
    await asyncio.to_thread(sys.stdin.read)
    watch.cancel()
    try:
        await watch
    except asyncio.CancelledError:
        pass


if __name__ == "__main__":
    asyncio.run(main())
