"""How a ``fieldloop`` process stops on SIGINT (Ctrl-C) or SIGTERM (systemd, a container, kill).

From the process's first instant (``fieldloop.__main__``, before the heavy imports), the first
signal asks the running command to stop gracefully: the demo and the edge agent unwind (the edge
flushes its telemetry and saves where its detectors were), central finishes its requests and
stops its workers. A second signal, or ``GRACE`` seconds without the process having ended, ends
it at once with ``os._exit``: what it had not finished by then is exactly what a ``kill -9``
would lose, which every part is built to survive (the edge outbox is fsync'd before a message
is acked, every ticket change is one transaction, central acks an event only after its commit).
So a stop request always ends the process within ``GRACE`` seconds, however loaded the machine
or stuck a thread, and its ports are free when it has.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

GRACE = 4.0  # seconds from the first stop signal to the end of the process, at the latest
# Long-running commands: asked to stop, even during start-up, they exit 0 (systemd's clean stop)
SERVICES = ("central", "edge")


class Stopped(Exception):
    """The command's job was cancelled by a stop signal and has cleaned up."""


class Stopper:
    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.signum: int | None = None
        self._graceful: Callable[[], None] | None = None
        self._installed = False

    def install(self) -> None:
        """Take SIGINT and SIGTERM for this process (its main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        self._installed = True

    @property
    def installed(self) -> bool:
        return self._installed

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it (130, 143)."""
        return 128 + (self.signum or signal.SIGINT)

    @contextlib.contextmanager
    def graceful(self, stop: Callable[[], None]) -> Iterator[None]:
        """While inside, a stop signal calls ``stop`` instead of raising KeyboardInterrupt where
        the main thread happens to be. It runs in the signal handler, so it may only set a flag
        or schedule work (``loop.call_soon_threadsafe``)."""
        previous, self._graceful = self._graceful, stop
        try:
            if self.signum is not None:  # asked before this job began: stop it at once
                stop()
            yield
        finally:
            self._graceful = previous

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            self._exit_now(f"a second stop signal ({name})")
        self.signum = signum
        timer = threading.Timer(
            self.grace, self._exit_now, args=(f"not stopped within {self.grace:g} s of {name}",)
        )
        timer.daemon = True
        timer.start()
        if self._graceful is None:
            raise KeyboardInterrupt  # nothing running that stops by itself: unwind from here
        self._graceful()

    def _exit_now(self, why: str) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.write(f"fieldloop: {why}; exiting now\n")
            sys.stderr.flush()
        os._exit(self.exit_code)


STOP = Stopper()


async def until_stopped(job: Awaitable[T]) -> T:
    """Await a command's job; a stop signal cancels it, so its own cleanup (finally blocks, exit
    stacks) runs, and then raises Stopped."""
    import asyncio  # here: this module is imported before anything heavy (fieldloop.__main__)

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with STOP.graceful(lambda: loop.call_soon_threadsafe(task.cancel)):
        try:
            return await job
        except asyncio.CancelledError:
            if STOP.requested:
                raise Stopped from None
            raise
