"""The FastAPI application: storage at start-up, the edge-event consumer in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from central.api.routes import board, meta, tickets
from central.ingest.consumer import EventConsumer
from central.ingest.events import IngestOutcome
from central.settings import Settings
from central.storage.db import make_engine, migrate, session_factory
from fieldloop import __version__
from fieldloop.brokers import parse_broker_url
from fieldloop.messages import Event
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.central")


def create_app(
    settings: Settings | None = None,
    *,
    on_outcome: Callable[[Event, IngestOutcome], None] | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db_url)
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate, engine)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        log.info("central storage: %s", engine.url.render_as_string(hide_password=True))
        task: asyncio.Task[None] | None = None
        if settings.broker_url:
            consumer = EventConsumer(
                parse_broker_url(settings.broker_url),
                app.state.sessions,
                Topics(settings.topic_root),
                client_id=settings.consumer_client_id,
                on_outcome=on_outcome,
            )
            app.state.consumer = consumer
            task = asyncio.create_task(consumer.run(), name="edge-event-consumer")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="FieldLoop",
        version=__version__,
        summary="Work orders raised by sensors and people, tracked to a verified close.",
        lifespan=lifespan,
    )
    app.include_router(tickets.router)
    app.include_router(meta.router)
    app.include_router(board.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/board")

    return app
