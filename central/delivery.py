"""Background work of a central process: sending the notification outbox (MQTT for the mobile
app, signed webhooks for other systems) and lapsing dispatch offers nobody answered in time.

Both are safe with several central processes on one PostgreSQL: rows are taken with SKIP
LOCKED, and an outbox row is leased (its next attempt pushed out) before it is sent, so a
process killed mid-send leaves it to be sent again by another after the lease. Delivery is
therefore at least once: every message carries its id, and clients drop repeats."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.domain.signatures import HEADER, sign
from central.services import dispatching, notifications
from central.services.live_rules import LiveRules
from central.storage.models import Notification
from fieldloop.brokers import BrokerAddress, client_kwargs, connected
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.central.delivery")

LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str


def _now() -> datetime:
    return datetime.now(UTC)


def _message(row: Notification) -> dict[str, object]:
    return {
        "id": row.id,
        "kind": row.kind,
        "recipient": row.recipient,
        "ticket": row.ticket_id,
        "at": row.created_at.isoformat(),
        "payload": row.payload,
    }


class NotificationSender:
    """Sends pending outbox rows to every configured channel; with none configured, rows are
    only read by the app (``GET /me/notifications`` and its SSE stream) and marked sent."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        broker: BrokerAddress | None,
        topics: Topics,
        webhooks: Sequence[Webhook] = (),
        client_id: str = "fieldloop-central-notify",
        every: float = 0.5,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.sessions = sessions
        self.clock = clock  # when rows are due and retried (a test moves it)
        self.broker = broker
        self.topics = topics
        self.webhooks = tuple(webhooks)
        self.client_id = client_id
        self.every = every
        self.sent = 0

    def _lease(self) -> list[dict[str, object]]:
        now = self.clock()
        with self.sessions() as s, s.begin():
            rows = notifications.due(s, now)
            notifications.lease(rows, now, LEASE)
            return [_message(r) for r in rows]

    def _settle(self, ok: list[int], failed: dict[int, str]) -> None:
        now = self.clock()
        with self.sessions() as s, s.begin():
            notifications.delivered(s, ok, now)
            for nid, error in failed.items():
                row = s.get(Notification, nid)
                if row is not None:
                    notifications.failed(s, row, error, now)

    async def _post(self, http: httpx.AsyncClient, hook: Webhook, body: bytes, nid: int) -> None:
        signature = sign(hook.secret, f"{nid}.".encode() + body, int(time.time()))
        r = await http.post(
            hook.url, content=body,
            headers={"Content-Type": "application/json", HEADER: signature,
                     "FieldLoop-Delivery": str(nid)},
        )  # fmt: skip
        if r.status_code >= 300:
            raise RuntimeError(f"{hook.url} answered {r.status_code}")

    async def send_batch(self, client: aiomqtt.Client | None, http: httpx.AsyncClient) -> int:
        batch = await asyncio.to_thread(self._lease)
        ok: list[int] = []
        failed: dict[int, str] = {}
        for m in batch:
            nid = int(m["id"])  # type: ignore[call-overload]
            body = json.dumps(m, ensure_ascii=False).encode()
            try:
                if client is not None:
                    await client.publish(self.topics.notifications(str(m["recipient"])), body,
                                         qos=1)  # fmt: skip
                for hook in self.webhooks:
                    await self._post(http, hook, body, nid)
            except (aiomqtt.MqttError, httpx.HTTPError, RuntimeError, ValueError) as exc:
                failed[nid] = f"{type(exc).__name__}: {exc}"
                continue
            ok.append(nid)
        if batch:
            await asyncio.to_thread(self._settle, ok, failed)
        self.sent += len(ok)
        return len(batch)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                try:
                    if self.broker is None:
                        await self._loop(None, http)
                    else:
                        async with connected(
                            aiomqtt.Client(
                                **client_kwargs(self.broker),  # type: ignore[arg-type]
                                identifier=self.client_id,
                                clean_session=True,
                            )
                        ) as client:
                            await self._loop(client, http)
                except aiomqtt.MqttError as exc:
                    log.warning("notifications: broker unavailable (%s); retrying", exc)
                    await asyncio.sleep(2)
                except SQLAlchemyError as exc:
                    log.warning("notifications: database unavailable (%s); retrying", exc)
                    await asyncio.sleep(2)

    async def _loop(self, client: aiomqtt.Client | None, http: httpx.AsyncClient) -> None:
        while True:
            n = await self.send_batch(client, http)
            if n == 0:
                await asyncio.sleep(self.every)


class Sweeps:
    """A loop whose sweeps run in a worker thread. Cancelling the loop's task does not stop a
    sweep already running in its thread, so ``stop`` tells it to stop between transactions and
    waits for it: nothing touches the database after the process has closed its pool."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._sweeping = threading.Lock()

    def stop(self) -> None:
        self.stopping.set()
        with self._sweeping:  # a sweep in progress ends at its next transaction boundary
            pass


class OfferSweeper(Sweeps):
    """Lapses offers past their time and sends each job on (or to the dispatcher)."""

    def __init__(
        self, sessions: sessionmaker[Session], rules: LiveRules, every: float = 1.0
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.rules = rules
        self.every = every
        self.lapsed = 0

    def sweep(self, now: datetime | None = None) -> int:
        with self._sweeping:
            return 0 if self.stopping.is_set() else self._sweep(now or _now())

    def _sweep(self, now: datetime) -> int:
        with self.sessions() as s, s.begin():
            due = dispatching.tickets_with_lapsed_offers(s, now)
        n = 0
        for tid in due:  # one transaction per ticket: one bad ticket does not stop the rest
            if self.stopping.is_set():
                break
            try:
                with self.sessions() as s, s.begin():
                    n += dispatching.lapse_due(s, tid, self.rules.current, now)
            except SQLAlchemyError as exc:
                log.warning("could not lapse the offers of ticket #%d: %s", tid, exc)
        self.lapsed += n
        return n

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except SQLAlchemyError as exc:
                log.warning("offer sweep failed, will retry: %s", exc)
            await asyncio.sleep(self.every)
