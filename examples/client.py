"""A wool client for externally managed Docker workers (Compose, Swarm, hybrid).

Runs a pool that discovers worker containers by label and dispatches rounds of
a routine that returns the hostname of the container serving it (the first 12
hex digits of the container's id). After each round it prints one JSON line::

    {"round": 3, "start": 1732900000.12, "hosts": {"3f2c9a1b7d4e": 4, ...},
     "errors": []}

and when the pool has exited, ``{"closed": true, "at": ...}``.

Compose (the host reaches bridge addresses, so this may run on the host)::

    python examples/client.py --network wool_wool

Swarm (the host cannot reach overlay addresses, so run it in a container on
the overlay, from the worker image, with the Engine socket for discovery; the
image's unprivileged user reaches the socket through its group)::

    docker run --rm -i --network wool-overlay \\
        -v /var/run/docker.sock:/var/run/docker.sock \\
        --group-add "$(stat -c %g /var/run/docker.sock)" \\
        -v "$PWD/examples/client.py:/client.py:ro" \\
        --entrypoint python3 wool-docker-worker:dev /client.py \\
        --network wool-overlay --label com.docker.swarm.service.name=wool-worker

Hybrid (the Swarm service as a baseline plus burst containers this client
creates with `DockerWorker` and removes when its pool exits)::

    ... /client.py --network wool-overlay --label wool.worker=true \\
        --spawn 2 --image wool-docker-worker:dev

Workers of its own placed by the Swarm on any node (`SwarmWorker`; ``mixed``
alternates them with `DockerWorker` on this Engine)::

    ... /client.py --network wool-overlay --spawn 4 --kind swarm \\
        --image wool-docker-worker:dev

``--nested`` makes each call dispatch its ``hostname`` from inside the
worker it runs on (a routine awaiting a routine), so a round's hosts are
where the nested calls ran.

``--rounds 0`` runs until standard input reaches its end or reads ``stop``
(``docker run -i``), which is how the tests drive it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import sys
import time

import cloudpickle
import wool

from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import SwarmWorker


@wool.routine
async def hostname(spin: float = 0.0) -> str:
    """Return the hostname of the container serving this call, after keeping
    its CPU busy for ``spin`` seconds (the loop is blocked meanwhile, as by
    any CPU-bound routine)."""
    until = time.process_time() + spin
    while time.process_time() < until:
        pass
    return socket.gethostname()


@wool.routine
async def nested_hostname(spin: float = 0.0) -> str:
    """Return where a ``hostname`` call dispatched from inside this routine's
    worker ran (the worker finds the pool through its owner's worker feed)."""
    return await hostname(spin)


def _pairs(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a mapping; ``"k="`` matches any value of ``k``."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


async def _stop_requested() -> None:
    """Return once standard input reads ``stop`` or reaches its end."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line or line.strip() == "stop":
            return


async def _rounds(
    count: int,
    calls: int,
    concurrency: int,
    interval: float,
    spin: float,
    nested: bool = False,
) -> None:
    """Dispatch ``count`` rounds (``0``: until asked to stop) and report each."""
    stop = asyncio.ensure_future(_stop_requested()) if count == 0 else None
    slots = asyncio.Semaphore(concurrency or calls)

    async def call() -> str:
        async with slots:
            return await (nested_hostname if nested else hostname)(spin)

    number = 0
    try:
        while count == 0 or number < count:
            if stop is not None and stop.done():
                return
            number += 1
            start = time.time()
            results = await asyncio.gather(
                *(call() for _ in range(calls)), return_exceptions=True
            )
            hosts = collections.Counter(r for r in results if isinstance(r, str))
            errors = [repr(r) for r in results if not isinstance(r, str)]
            _emit({"round": number, "start": start, "hosts": hosts, "errors": errors})
            # Pacing, so that the rounds sample the pool over time.
            await asyncio.sleep(interval)
    finally:
        if stop is not None:
            stop.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True, help="network of the workers")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="discovery selector label (repeatable; default wool.worker=true)",
    )
    parser.add_argument("--spawn", type=int, default=0, help="burst workers")
    parser.add_argument(
        "--kind",
        choices=("docker", "swarm", "mixed"),
        default="docker",
        help="burst workers: DockerWorker, SwarmWorker, or alternately both",
    )
    parser.add_argument("--image", help="worker image of the burst workers")
    parser.add_argument(
        "--worker-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra container label of the burst workers (repeatable)",
    )
    parser.add_argument("--quorum", type=int, default=1, help="workers to wait for")
    parser.add_argument("--rounds", type=int, default=5, help="0: until stdin ends")
    parser.add_argument("--calls", type=int, default=12, help="calls per round")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="calls in flight at once (default: all calls of a round)",
    )
    parser.add_argument(
        "--nested", action="store_true", help="calls dispatch from inside workers"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds")
    parser.add_argument(
        "--spin", type=float, default=0.0, help="CPU seconds each call spends"
    )
    args = parser.parse_args()
    if args.spawn and not args.image:
        parser.error("--spawn needs --image")

    discovery = DockerDiscovery(network=args.network, labels=_pairs(args.label) or None)
    if args.spawn:
        worker_labels = _pairs(args.worker_label)
        made = 0

        def burst(*tags, **kw):
            nonlocal made
            made += 1
            swarm = args.kind == "swarm" or (args.kind == "mixed" and made % 2 == 1)
            # Default keywords: this client shares no files with the Engine,
            # and a Swarm task may run on any node, so its worker feed
            # reaches the workers through a relay.
            if swarm:
                return SwarmWorker(
                    *tags,
                    image=args.image,
                    network=args.network,
                    labels=worker_labels,
                    log_output=False,
                    **kw,
                )
            return DockerWorker(
                *tags,
                image=args.image,
                network=args.network,
                labels=worker_labels,
                log_output=False,
                **kw,
            )

        pool = wool.WorkerPool(
            spawn=args.spawn,
            worker=burst,
            discovery=discovery,
            quorum=args.quorum,
        )
    else:
        pool = wool.WorkerPool(discovery=discovery.subscriber, quorum=args.quorum)
    async with pool:
        await _rounds(
            args.rounds,
            args.calls,
            args.concurrency,
            args.interval,
            args.spin,
            args.nested,
        )
    _emit({"closed": True, "at": time.time()})


if __name__ == "__main__":
    # The routine lives in __main__, which the workers do not have: ship it by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    asyncio.run(main())
