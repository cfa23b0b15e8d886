"""Running central under uvicorn, in-process (the demo, the tests) or as ``fieldloop central``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from central.api.app import create_app
from central.ingest.events import IngestOutcome
from central.settings import Settings
from fieldloop.messages import Event
from fieldloop.net import ensure_port_free


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to its host: the demo and the tests stop it themselves, and
    ``serve`` below installs the handlers for a standalone process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CentralServer:
    def __init__(
        self,
        settings: Settings,
        on_outcome: Callable[[Event, IngestOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(settings, on_outcome=on_outcome)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    async def start(self) -> None:
        await ensure_port_free(self.settings.host, self.settings.port, "pass another --port")
        self._task = asyncio.create_task(self._server.serve(), name="central-http")
        try:
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # re-raise why it could not start (port, bad DB URL)
                    raise RuntimeError(f"central did not start on {self.url}")
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            # stopped while starting (Ctrl-C): start-up runs to its end and uvicorn shuts down
            # at once, rather than the lifespan being cancelled half-way (an error to uvicorn)
            self.request_stop()
            with contextlib.suppress(Exception, SystemExit):
                await self._task
            self._task = None
            raise

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None

    def _reload_rules(self) -> None:
        live = getattr(self.app.state, "live_rules", None)
        if live is not None:
            self._reload = asyncio.ensure_future(asyncio.to_thread(live.reload))

    def request_stop(self) -> None:
        """Shut down gracefully: in-flight requests finish, then the workers stop. Asked for
        during start-up, the step under way finishes and the rest is skipped."""
        self.app.state.stop_requested = True
        self._server.should_exit = True

    async def serve(self, *, stop_signals: bool = True) -> None:
        """Run as the process's main job: SIGINT/SIGTERM shut down gracefully (a second one
        forces it), so systemd's stop finishes in-flight requests and the consumer's work.
        ``stop_signals=False``: the caller handles them and calls ``request_stop``."""
        await ensure_port_free(self.settings.host, self.settings.port, "pass another --port")
        loop = asyncio.get_running_loop()
        if stop_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._server.handle_exit, sig, None)
        # SIGHUP (systemctl reload): read the rules again; a bad set is rejected and logged
        loop.add_signal_handler(signal.SIGHUP, self._reload_rules)
        await self._server.serve()
