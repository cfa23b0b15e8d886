"""The FastAPI application: storage at start-up, the edge-event consumer in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine as SaEngine
from sqlalchemy.exc import SQLAlchemyError

from central.api import errors
from central.api.auth import TokenCache
from central.api.body_limit import BodyLimitMiddleware
from central.api.routes import (
    attachments,
    auth,
    board,
    dispatch,
    edge,
    follow,
    meta,
    report_form,
    rules,
    sla,
    telemetry,
    tickets,
    webhooks,
)
from central.delivery import NotificationSender, OfferSweeper, Webhook
from central.domain.quarantine import Limits
from central.ingest.consumer import EventConsumer
from central.ingest.events import IngestOutcome, IngestPolicy
from central.ingest.telemetry import Screening
from central.services.idempotency import KEEP_FOR, purge_expired
from central.services.live_rules import Engine, LiveRules
from central.settings import Settings
from central.sla_scheduler import SlaScheduler
from central.storage.db import make_engine, migrate, session_factory
from central.telemetry.profiles import ProfileMetrics
from central.telemetry.store import Retention, store_for
from fieldloop import __version__
from fieldloop.brokers import parse_broker_url
from fieldloop.messages import Event
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.central")


HOUSEKEEPING_EVERY = 600.0  # seconds


async def _housekeeping(app: FastAPI) -> None:
    """Forget idempotency keys after a day (a retry after that is a new request); the telemetry
    store's partitions ahead and retention."""
    while True:
        try:
            await asyncio.to_thread(_purge, app)
        except SQLAlchemyError as exc:  # the database may be down for a while; try again later
            log.warning("housekeeping failed, will retry: %s", exc)
        await asyncio.sleep(HOUSEKEEPING_EVERY)


def _purge(app: FastAPI) -> None:
    now = datetime.now(UTC)
    with app.state.sessions() as session, session.begin():
        n = purge_expired(session, now - KEEP_FOR)
    if n:
        log.info("forgot %d idempotency key(s) older than %s", n, KEEP_FOR)
    with app.state.engine.begin() as conn:
        done = app.state.telemetry.maintain(conn, now)
    if done:
        log.info("telemetry store: %s", done)


async def _connections_returned(engine: SaEngine, within: float = 10.0) -> None:
    """Cancelling a background task does not stop the thread it was waiting on: let such threads
    finish their transaction and return their connection before the pool is closed, so none is
    left open behind it."""
    pool = engine.pool
    checked_out = getattr(pool, "checkedout", None)
    if checked_out is None:
        return
    for _ in range(int(within / 0.02)):
        if checked_out() == 0:
            return
        await asyncio.sleep(0.02)
    log.warning("%d database connection(s) still in use at shutdown", checked_out())


def _engine(settings: Settings) -> Engine | None:
    if settings.rules_engine == "reference" or settings.rules_dir is None:
        return None
    from central.rules.worker import DurableEngine  # the C engine lives in its worker only

    return DurableEngine()


def create_app(
    settings: Settings | None = None,
    *,
    on_outcome: Callable[[Event, IngestOutcome], None] | None = None,
) -> FastAPI:
    settings = settings or Settings()
    live_rules = LiveRules(settings.rules_dir, _engine(settings), settings.timezone)
    policy = IngestPolicy(
        reopen_window=settings.iot_reopen_window,
        auto_resolve=settings.iot_auto_resolve,
        rules=live_rules,
    )

    retention = Retention(
        keep=settings.telemetry_retention,
        compress_after=settings.telemetry_compress_after,
        late=settings.telemetry_max_age,
    )
    screening = Screening(
        Limits(settings.telemetry_max_future, settings.telemetry_max_age),
        ProfileMetrics(settings.profiles_dir),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db_url)
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate, engine)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.telemetry = await asyncio.to_thread(store_for, engine, retention)
        app.state.ingest_policy = policy
        app.state.live_rules = live_rules
        if not app.state.stop_requested:
            await asyncio.to_thread(live_rules.reload)  # a rejected set is logged, never fatal
        if app.state.stop_requested:
            # asked to stop while starting (Ctrl-C): start nothing more; uvicorn shuts down
            # without serving a request
            try:
                yield
            finally:
                await asyncio.to_thread(live_rules.close)
                engine.dispose()
            return
        app.state.token_cache = TokenCache()
        log.info("central storage: %s", engine.url.render_as_string(hide_password=True))
        task: asyncio.Task[None] | None = None
        if settings.broker_url:
            consumer = EventConsumer(
                parse_broker_url(settings.broker_url),
                app.state.sessions,
                Topics(settings.topic_root),
                client_id=settings.consumer_client_id,
                on_outcome=on_outcome,
                policy=policy,
                group=settings.consumer_group,
                screening=screening,
                reconnect_max=settings.broker_reconnect_max,
            )
            app.state.consumer = consumer
            task = asyncio.create_task(consumer.run(), name="edge-event-consumer")
        watcher = asyncio.create_task(live_rules.watch(), name="rules-watcher")
        sender = NotificationSender(
            app.state.sessions,
            broker=parse_broker_url(settings.broker_url) if settings.broker_url else None,
            topics=Topics(settings.topic_root),
            webhooks=[Webhook(h["url"], h["secret"]) for h in settings.notify_webhooks],
            client_id=f"{settings.consumer_client_id}-notify",
        )
        sweeper = OfferSweeper(app.state.sessions, live_rules, settings.offer_sweep_every)
        scheduler = SlaScheduler(app.state.sessions, live_rules, every=settings.sla_sweep_every)
        app.state.notification_sender, app.state.offer_sweeper = sender, sweeper
        app.state.sla_scheduler = scheduler
        workers: list[asyncio.Task[None]] = []
        if settings.workers:  # else another central runs them (and a test calls them itself)
            workers = [
                asyncio.create_task(_housekeeping(app), name="housekeeping"),
                asyncio.create_task(sender.run(), name="notifications"),
                asyncio.create_task(sweeper.run(), name="offer-sweeper"),
                asyncio.create_task(scheduler.run(), name="sla-scheduler"),
            ]
        try:
            yield
        finally:
            for t in (task, watcher, *workers):
                if t is None:
                    continue
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for sweeps in (sweeper, scheduler):  # their threads may still be mid-sweep
                await asyncio.to_thread(sweeps.stop)
            await asyncio.to_thread(live_rules.close)
            await _connections_returned(engine)
            engine.dispose()

    app = FastAPI(
        title="FieldLoop",
        version=__version__,
        summary="Work orders raised by sensors and people, tracked to a verified close.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stop_requested = False  # CentralServer.request_stop: cut a start-up short
    errors.install(app)
    for module in (
        tickets, attachments, follow, auth, edge, webhooks, report_form, rules, meta, board,
        dispatch, sla, telemetry,
    ):  # fmt: skip
        app.include_router(module.router)
    webhooks.configure(
        app,
        webhook_secrets=settings.webhook_secrets,
        replay_window_s=settings.webhook_replay_window,
        public_reporting=settings.public_reporting,
    )
    # Bodies are refused by their declared size before anything reads them; uploads get more.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        limits=[(r"^/tickets/\d+/attachments$", settings.max_upload_bytes)],
    )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/board")

    return app
