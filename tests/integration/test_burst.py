"""A burst of work at pool entry runs on every worker, like `LocalWorker`'s.

wool's quorum gate opens on the first worker it admits (``quorum=1``), and every
routine queued at that moment goes to the workers known then. So a pool is only
parallel from its first dispatch if discovery's first answer already holds every
worker that serves: these tests gather a burst right at entry and check who ran
it, for `DockerWorker` and, as the reference, for `LocalWorker`.
"""

from __future__ import annotations

import asyncio
from typing import Final

import pytest

from . import routines

pytestmark = pytest.mark.integration

POOLS: Final[int] = 10
"""Fresh pools per case."""

SPAWN: Final[int] = 4
"""Workers per pool."""


class TestBurst:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("kind", ["docker", "local"])
    async def test_burst_at_entry_uses_every_worker(self, case, kind):
        """Test a burst of CPU-bound routines gathered at pool entry.

        Given:
            A fresh pool of 4 workers (`DockerWorker` with `DockerDiscovery`,
            or `LocalWorker`) with wool's default quorum
        When:
            8 CPU-bound routines are gathered as soon as it is entered, in 10
            fresh pools one after another
        Then:
            Every one of the 4 workers should run a routine, in every pool
        """
        # Arrange
        used = []

        # Act
        for _ in range(POOLS):
            async with case.pool(kind, SPAWN):
                hosts = await asyncio.gather(
                    *(routines.burn(0.1) for _ in range(2 * SPAWN))
                )
            used.append(len(set(hosts)))

        # Assert
        assert used == [SPAWN] * POOLS
        assert case.containers() == []
