"""Demo: a wool pool of Docker workers computing primes, showing who ran what.

Run it with ``scripts/demo.sh``, which builds everything and creates the network.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import cloudpickle
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker

IMAGE = os.environ.get("WOOL_DOCKER_IMAGE", "wool-docker-worker:dev")
NETWORK = os.environ.get("WOOL_DOCKER_NETWORK", "wool-demo")


@wool.routine
async def count_primes(lo: int, hi: int) -> tuple[str, int, int, int]:
    """Count the primes in [lo, hi) and say which container did it."""
    count = sum(
        1 for n in range(max(lo, 2), hi) if all(n % d for d in range(2, int(n**0.5) + 1))
    )
    return socket.gethostname(), lo, hi, count


async def main() -> None:
    started = time.perf_counter()
    async with wool.WorkerPool(
        spawn=4,
        worker=lambda *tags, **kw: DockerWorker(
            *tags, image=IMAGE, network=NETWORK, log_output=False, **kw
        ),
        discovery=DockerDiscovery(network=NETWORK),
    ):
        print(f"pool of 4 Docker workers up in {time.perf_counter() - started:.2f} s")
        chunks = [(lo, lo + 25_000) for lo in range(0, 200_000, 25_000)]
        results = await asyncio.gather(*(count_primes(lo, hi) for lo, hi in chunks))
        print(f"{'container':<14} {'range':>18} {'primes':>7}")
        for host, lo, hi, count in results:
            print(f"{host:<14} {f'[{lo}, {hi})':>18} {count:>7}")
        total = sum(r[3] for r in results)
        print(
            f"{total} primes below 200000 from {len({r[0] for r in results})} containers"
        )
    print(f"pool down; total {time.perf_counter() - started:.2f} s (containers removed)")


if __name__ == "__main__":
    # The routine lives in __main__, which the containers do not have: ship it by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    asyncio.run(main())
