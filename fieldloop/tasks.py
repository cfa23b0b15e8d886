"""Keeping a stop request: the one asyncio helper every long-running loop of ours calls.

On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives in the same loop
iteration as the result it waits for (CPython gh-86296, fixed in 3.12): it returns the result
instead of raising. pymodbus awaits every Modbus answer and aiomqtt every publish through it, so a
SIGTERM that lands at that instant would be lost and a loop that runs forever would keep going;
a TaskGroup cancels its children only once, so the agent would never stop. The task still counts
the request (``Task.cancelling()``), so each turn of such a loop asks it again.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop and is still running."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
