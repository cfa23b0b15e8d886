"""Stopping asyncio work reliably on Python 3.11.

On 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives in the same loop iteration as
the result it waits for (CPython gh-86296, fixed in 3.12): it returns the result instead of
raising. pymodbus awaits every Modbus answer and aiomqtt every publish through it, so a SIGTERM
that lands at that instant is lost, and a loop that runs forever keeps going; a TaskGroup cancels
its children only once, so the agent would never stop. Two defences:

- ``raise_if_cancelled()`` once per turn of such a loop: the task still counts the request
  (``Task.cancelling()``). Only in tasks that own no TaskGroup: on 3.11 a TaskGroup whose child
  fails while the owner waits in ``__aexit__`` cancels the owner without ever uncancelling it, so
  the owner's count stays raised for good.
- ``stop_tasks()`` at the top: cancel, and ask again any task still running after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("fieldloop.tasks")


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop and is still running."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], grace: float = 3.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended. A task still running ``grace``
    seconds after its request lost it (see above) and is asked again; the grace leaves a clean
    stop (a last publish, a flush) time to finish before it could be interrupted."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for t in pending:
        t.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=grace)
        for t in pending:
            log.warning("task %s ignored a stop request; asking again", t.get_name())
            t.cancel()
    for t in tasks:  # collected here, or asyncio logs "exception was never retrieved"
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s had failed", t.get_name(), exc_info=t.exception())
