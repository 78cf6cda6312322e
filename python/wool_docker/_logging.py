"""Where the native core's log records enter Python `logging`.

The core queues its diagnostics (``tracing`` events) and worker containers'
output without the GIL and hands them here in batches; see ``src/logging.rs``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable


def emit(records: Iterable[tuple[str, int, str, tuple[str, bool] | None]]) -> None:
    """Log a batch of native records.

    :param records:
        ``(logger name, level, message, container)`` tuples; ``container`` is
        ``(container name, from stderr)`` for a line of container output, which
        is passed to handlers as the ``container`` and ``stderr`` record
        attributes.
    """
    for name, level, message, container in records:
        logger = logging.getLogger(name)
        if not logger.isEnabledFor(level):
            continue
        extra = (
            None
            if container is None
            else {"container": container[0], "stderr": container[1]}
        )
        logger.log(level, "%s", message, extra=extra)
