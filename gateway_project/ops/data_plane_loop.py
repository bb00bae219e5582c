"""Reading the data plane's state from a Django worker thread, safely.

The runtime's dicts (traffic buckets, buffered metrics) belong to its event loop, which
changes them between any two steps of a reader in another thread ("dictionary changed
size during iteration"). A read run on the loop itself happens between two of the loop's
callbacks, when nothing else touches them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["LOOP_READ_TIMEOUT_SECONDS", "on_the_loop"]

# A loop this busy would have the page wait on it; the caller shows what it has instead.
LOOP_READ_TIMEOUT_SECONDS = 1.0

Result = TypeVar("Result")


def on_the_loop(runtime, read: Callable[[], Result], timeout: float = LOOP_READ_TIMEOUT_SECONDS) -> Result:
    """`read()` run on the runtime's event loop and its result returned to this thread.

    Without a running loop (a runtime that was never started) nothing else changes the
    state, so `read()` runs here. Raises TimeoutError when the loop does not get to it.
    """
    loop = getattr(runtime, "loop", None)
    if loop is None or not loop.is_running() or _running_loop() is loop:
        return read()

    async def call() -> Result:
        return read()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
