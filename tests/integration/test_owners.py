"""A pool uses its own workers: two owners side by side on one network.

Each owner is a separate interpreter running ``owner_script.py``: a pool of 2
`DockerWorker`s with the default ``DockerDiscovery(network=...)``. Both run at
the same time on one network, next to a worker container started by hand
(``docker run``, no ``wool.docker.managed``), as in the hybrid mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from typing import Final

import pytest

pytestmark = pytest.mark.integration

SCRIPT: Final[Path] = Path(__file__).with_name("owner_script.py")
"""The owner script each owner runs."""

TIMEOUT: Final[float] = 180.0
"""Seconds one owner may take for one step."""

CALLS: Final[int] = 15
"""Routines each owner gathers (and nested routines each of those dispatches)."""


class Owner:
    """One owner process, spoken to in JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.token = ""

    @classmethod
    async def start(cls, args: dict[str, Any]) -> Owner:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            json.dumps(args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def read(self) -> dict[str, Any]:
        """The next JSON line the owner prints."""
        assert self.process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            line = await self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            stderr = await self.process.stderr.read()
            pytest.fail(f"the owner ended early: {stderr.decode()[-4000:]}")
        return json.loads(line)

    def send(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{word}\n".encode())

    async def finish(self) -> tuple[int, str]:
        """Let the owner exit; its status and stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        async with asyncio.timeout(TIMEOUT):
            _, stderr = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.communicate()


class TestTwoOwners:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("shared", [False, True], ids=["default", "shared"])
    async def test_two_owners_side_by_side(self, case, docker, shared):
        """Test two owners' pools of `DockerWorker`s on one network at once.

        Given:
            A worker container started by hand (``docker run``, selector
            label only, the Engine socket mounted and its group added so its
            own nested routines can discover), and two owner processes, each
            with a pool of 2 `DockerWorker`s and ``DockerDiscovery(network=...)``
            (or with ``shared=True``), both up at the same time
        When:
            Each gathers 15 routines, and 15 nested routines that each
            dispatch 15 more from inside whichever container runs them
        Then:
            By default each owner's routines, nested ones included, should run
            on its own 2 containers and the hand-run one, never on the other
            owner's; with ``shared=True`` on all 5
        """
        # Arrange
        socket_group = str(os.stat("/var/run/docker.sock").st_gid)
        hybrid = docker.run(
            "run", "--detach", "--group-add", socket_group,
            "--network", case.network,
            "--label", "wool.worker=true",
            *(a for k, v in case.labels.items() for a in ("--label", f"{k}={v}")),
            "--volume", "/var/run/docker.sock:/var/run/docker.sock",
            "--env", "DOCKER_HOST=unix:///var/run/docker.sock",
            case.image,
        ).stdout.strip()  # fmt: skip
        args = {
            "image": case.image,
            "network": case.network,
            "labels": case.labels,
            "name_prefix": case.name_prefix,
            "shared": shared,
            "expect": 5,
            "calls": CALLS,
        }
        owners: list[Owner] = []
        try:
            owners = list(await asyncio.gather(Owner.start(args), Owner.start(args)))
            tokens = [(await owner.read())["owner"] for owner in owners]
            own = [
                set(docker.containers(f"wool.docker.owner={token}")) for token in tokens
            ]
            for owner in owners:
                owner.send("go")

            # Act
            results = [await owner.read() for owner in owners]
            finished = [await owner.finish() for owner in owners]
        finally:
            for owner in owners:
                await owner.kill()
            docker.remove_containers(hybrid)

        # Assert
        for status, stderr in finished:
            assert status == 0, stderr[-4000:]
        hand_run = hybrid[:12]
        everyone = {c[:12] for c in own[0] | own[1]} | {hand_run}
        assert len(everyone) == 5
        for mine, result in zip(own, results, strict=True):
            expected = everyone if shared else {c[:12] for c in mine} | {hand_run}
            assert set(result["hosts"]) == expected, result
            reached: set[str] = set()
            for host, nested in result["nested"]:
                assert host in expected, result
                assert set(nested) <= expected, (host, nested)
                reached |= set(nested)
            assert reached == expected, result
