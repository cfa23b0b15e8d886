"""The uplink: publishes outbox events to the broker at QoS 1 and deletes each one when central's
ack for its id comes back. Unacked events are resent after ``resend_after`` seconds and after every
reconnect, so nothing is lost while the broker or central is away; central dedups by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt
from pydantic import ValidationError

from edge_agent.outbox import Outbox
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs
from fieldloop.messages import Ack, SiteStatus, TelemetryBatch
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
        on_ack: Callable[[Ack], None] | None = None,
        client_id: str | None = None,
    ) -> None:
        self.site = site
        self.broker = broker
        self.outbox = outbox
        self.topics = topics or Topics()
        self.resend_after = resend_after
        self.on_ack = on_ack
        self.client_id = client_id or f"fieldloop-edge-{site}"
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._sent_at: dict[str, float] = {}
        self.telemetry_dropped = 0

    def notify(self) -> None:
        """A new event is in the outbox: publish now rather than at the next resend tick."""
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff()
        failing = False
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                delay = backoff.next_delay()
                if not failing:  # say it once, not at every retry
                    log.warning(
                        "broker %s unreachable (%s); events stay in the outbox, retrying",
                        self.broker,
                        exc,
                    )
                    failing = True
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            failing = False

    async def _session(self) -> None:
        status_topic = self.topics.status(self.site)
        offline = SiteStatus(site=self.site, online=False).model_dump_json().encode()
        async with aiomqtt.Client(
            **client_kwargs(self.broker),  # type: ignore[arg-type]
            identifier=self.client_id,
            clean_session=False,  # the broker keeps acks for us while we are away
            will=aiomqtt.Will(status_topic, offline, qos=1, retain=True),
        ) as client:
            self._client = client
            self._sent_at.clear()  # everything unacked goes out again on a new connection
            await client.subscribe(self.topics.ack(self.site), qos=1)
            online = SiteStatus(site=self.site, online=True, time=datetime.now(UTC))
            await client.publish(
                status_topic, online.model_dump_json().encode(), qos=1, retain=True
            )
            log.info("edge uplink connected to %s as %s", self.broker, self.client_id)
            self.connected.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._publish_loop(client))
                    tg.create_task(self._ack_loop(client))
            except* aiomqtt.MqttError as eg:
                raise eg.exceptions[0] from None
            finally:
                self.connected.clear()
                self._client = None

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        topic = self.topics.events(self.site)
        while True:
            self._wake.clear()
            now = time.monotonic()
            for row in self.outbox.pending():
                last = self._sent_at.get(row.id)
                if last is not None and now - last < self.resend_after:
                    continue
                await client.publish(topic, row.payload, qos=1)
                if last is not None:
                    log.info(
                        "resent unacked event %s (device %s seq %d)", row.id, row.device, row.seq
                    )
                self._sent_at[row.id] = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.resend_after / 2)

    async def _ack_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                ack = Ack.model_validate_json(message.payload)  # type: ignore[arg-type]
            except (ValidationError, ValueError) as exc:
                log.warning("ignored a malformed ack on %s: %s", message.topic, exc)
                continue
            self._sent_at.pop(ack.acked_id, None)
            if self.outbox.ack(ack.acked_id):
                log.debug("event %s acked by central (%s)", ack.acked_id, ack.result)
            if self.on_ack:
                self.on_ack(ack)

    async def publish_telemetry(self, batch: TelemetryBatch) -> None:
        """Best effort while connected; telemetry store-and-forward is the edge issue's work."""
        client = self._client
        if client is None:
            self.telemetry_dropped += 1
            return
        try:
            await client.publish(self.topics.telemetry(self.site), batch.to_json(), qos=1)
        except aiomqtt.MqttError:
            self.telemetry_dropped += 1
