"""The uplink: publishes the outbox (events and telemetry) at QoS 1, at most ``window`` unacked
messages at a time, in the order they were stored, and deletes each row when central's ack for its
id comes back. Unacked messages are resent after ``resend_after`` seconds and, in order, after
every reconnect, so nothing is lost while the broker or central is away; central dedups by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt
from pydantic import ValidationError

from edge_agent.outbox import Outbox, OutboxRow
from fieldloop import __version__
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs, connected
from fieldloop.messages import Ack, SiteStatus
from fieldloop.tasks import raise_if_cancelled
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.edge.uplink")


class Uplink:
    def __init__(
        self,
        site: str,
        broker: BrokerAddress,
        outbox: Outbox,
        topics: Topics | None = None,
        *,
        resend_after: float = 10.0,
        window: int = 256,
        on_ack: Callable[[Ack], None] | None = None,
        client_id: str | None = None,
        status: Callable[[], dict[str, object]] | None = None,
        reconnect_max: float = 30.0,
    ) -> None:
        self.site = site
        self.reconnect_max = reconnect_max  # the longest wait between attempts to reconnect
        self.broker = broker
        self.outbox = outbox
        self.topics = topics or Topics()
        self.resend_after = resend_after
        self.window = window
        self.on_ack = on_ack
        self.client_id = client_id or f"fieldloop-edge-{site}"
        self.status = status
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._in_flight: dict[str, tuple[float, int]] = {}  # id -> (sent at, position)
        self._cursor = 0  # highest outbox position published on this connection
        self._pending_acks: list[str] = []
        self._client: aiomqtt.Client | None = None
        self._status_task: asyncio.Task[None] | None = None
        self.published = 0
        self.resent = 0

    def notify(self) -> None:
        """New messages are in the outbox: publish now rather than at the next resend tick."""
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(cap=self.reconnect_max)
        failing = False
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                if not failing:  # say it once, not at every retry
                    log.warning(
                        "broker %s unreachable (%s); %d message(s) wait in the outbox, retrying",
                        self.broker,
                        exc,
                        self.outbox.count(),
                    )
                    failing = True
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            failing = False

    async def _session(self) -> None:
        status_topic = self.topics.status(self.site)
        offline = SiteStatus(site=self.site, online=False).model_dump_json().encode()
        async with connected(
            aiomqtt.Client(
                **client_kwargs(self.broker),  # type: ignore[arg-type]
                identifier=self.client_id,
                clean_session=False,  # the broker keeps acks for us while we are away
                will=aiomqtt.Will(status_topic, offline, qos=1, retain=True),
            )
        ) as client:
            # everything unacked goes out again, in order, on a new connection
            self._in_flight.clear()
            self._cursor = 0
            await client.subscribe(self.topics.ack(self.site), qos=1)
            await self.publish_status(client)
            log.info("edge uplink connected to %s as %s", self.broker, self.client_id)
            self._client = client
            self.connected.set()
            try:
                await self._serve(client)
            except asyncio.CancelledError:
                # a clean stop: say so, since the broker only sends our will on a crash
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.publish_status(client, online=False), 2.0)
                raise
            finally:
                self._client = None
                self.connected.clear()

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._publish_loop(client))
                tg.create_task(self._ack_loop(client))
                tg.create_task(self._ack_flush_loop())
        except* aiomqtt.MqttError as eg:
            raise eg.exceptions[0] from None

    def refresh_status(self) -> None:
        """Publish the retained status now, if connected (called by the agent's status loop)."""
        client = self._client
        if client is None or (self._status_task is not None and not self._status_task.done()):
            return
        self._status_task = asyncio.get_running_loop().create_task(self._publish_status(client))

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self.publish_status(client)

    async def publish_status(self, client: aiomqtt.Client, online: bool = True) -> None:
        extra = self.status() if self.status else {}
        status = SiteStatus(
            site=self.site,
            online=online,
            time=datetime.now(UTC),
            agent_version=__version__,
            **extra,  # type: ignore[arg-type]
        )
        await client.publish(
            self.topics.status(self.site), status.model_dump_json().encode(), qos=1, retain=True
        )

    def _topic(self, row: OutboxRow) -> str:
        if row.stream == "event":
            return self.topics.events(self.site)
        return self.topics.telemetry(self.site)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            # 1. anything in flight too long is resent, oldest first
            stale = sorted(
                (pos, mid)
                for mid, (sent, pos) in self._in_flight.items()
                if now - sent >= self.resend_after
            )
            if stale:
                for row in self.outbox.pending(limit=len(stale), after=stale[0][0] - 1):
                    if row.id in self._in_flight:
                        await client.publish(self._topic(row), row.payload, qos=1)
                        self._in_flight[row.id] = (now, row.pos)
                        self.resent += 1
                log.info("resent %d unacked message(s)", len(stale))
            # 2. fill the window with what has not been sent on this connection yet
            room = self.window - len(self._in_flight)
            if room > 0:
                for row in self.outbox.pending(limit=room, after=self._cursor):
                    await client.publish(self._topic(row), row.payload, qos=1)
                    self._in_flight[row.id] = (now, row.pos)
                    self._cursor = row.pos
                    self.published += 1
            wait_for = self._wake if len(self._in_flight) < self.window else self._acked
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for.wait(), timeout=min(1.0, self.resend_after / 2))
            raise_if_cancelled()

    async def _ack_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raise_if_cancelled()
            try:
                ack = Ack.model_validate_json(message.payload)  # type: ignore[arg-type]
            except (ValidationError, ValueError) as exc:
                log.warning("ignored a malformed ack on %s: %s", message.topic, exc)
                continue
            self._in_flight.pop(ack.acked_id, None)
            self._pending_acks.append(ack.acked_id)
            self._acked.set()
            if self.on_ack:
                self.on_ack(ack)

    async def _ack_flush_loop(self) -> None:
        """Delete acked rows in batches: one fsync per burst of acks, not one per ack. An ack
        lost by a crash before its flush only means a resend, which central ignores."""
        while True:
            await asyncio.sleep(0.05)
            self.flush_acks()

    def flush_acks(self) -> None:
        if self._pending_acks:
            ids, self._pending_acks = self._pending_acks, []
            self.outbox.ack_many(ids)
            self._wake.set()
