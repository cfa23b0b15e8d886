"""The MQTT consumer of edge events.

Every delivery is treated as at-least-once: the event is committed (or found already committed)
before its ack is published, so an ack always means "central has it". A malformed message goes to
the dead-letter table with the reason and the consumer carries on. If the database is down the
event is not acked; the edge resends it later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import aiomqtt
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.ingest.events import IngestOutcome, dead_letter, ingest
from central.ingest.telemetry import store_batch
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs
from fieldloop.messages import Ack, AckResult, Event, TelemetryBatch
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.central.ingest")

MAX_PAYLOAD = 4 * 1024 * 1024  # a telemetry batch of 10,000 samples fits


def _now() -> datetime:
    return datetime.now(UTC)


def _pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(message)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class EventConsumer:
    def __init__(
        self,
        broker: BrokerAddress,
        sessions: sessionmaker[Session],
        topics: Topics | None = None,
        *,
        client_id: str = "fieldloop-central",
        on_outcome: Callable[[Event, IngestOutcome], None] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.broker = broker
        self.sessions = sessions
        self.topics = topics or Topics()
        self.client_id = client_id
        self.on_outcome = on_outcome
        self.clock = clock
        self.connected = asyncio.Event()
        self.processed = 0
        self.telemetry_batches = 0
        self.dead_lettered = 0

    async def run(self) -> None:
        backoff = Backoff()
        failing = False
        while True:
            try:
                async with aiomqtt.Client(
                    **client_kwargs(self.broker),  # type: ignore[arg-type]
                    identifier=self.client_id,
                    clean_session=False,  # events published while we are down wait for us
                ) as client:
                    await client.subscribe(self.topics.all_events(), qos=1)
                    await client.subscribe(self.topics.all_telemetry(), qos=1)
                    log.info(
                        "central consuming %s and %s on %s",
                        self.topics.all_events(),
                        self.topics.all_telemetry(),
                        self.broker,
                    )
                    self.connected.set()
                    backoff.reset()
                    failing = False
                    async for message in client.messages:
                        await self.handle(client, str(message.topic), bytes(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if not failing:
                    log.warning("broker %s unreachable (%s); retrying", self.broker, exc)
                    failing = True
                await asyncio.sleep(backoff.next_delay())

    async def handle(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        if self.topics.leaf_of(topic) == "telemetry":
            await self.handle_telemetry(client, topic, payload)
            return
        received = self.clock()
        site = self.topics.site_of(topic)
        event, reason = _parse_as(Event, site, payload)
        if event is None:
            await self._reject(client, topic, site, payload, reason, received)
            return
        try:
            outcome = await asyncio.to_thread(ingest, self.sessions, event, received)
        except SQLAlchemyError as exc:
            # Not acked: the edge keeps the event and resends it; nothing is lost.
            log.error("could not store event %s (%s); it will be resent by the edge", event.id, exc)
            await asyncio.sleep(1.0)
            return
        self.processed += 1
        if self.on_outcome:
            self.on_outcome(event, outcome)
        ack = Ack(
            site=event.site,
            acked_id=event.id,
            device=event.device,
            asset=event.asset,
            rule_id=event.rule_id,
            seq=event.seq,
            event_time=event.event_time,
            time=self.clock(),
            result=outcome.result,
            ticket_id=outcome.ticket_id,
        )
        await client.publish(self.topics.ack(event.site), ack.to_json(), qos=1)

    async def handle_telemetry(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        received = self.clock()
        site = self.topics.site_of(topic)
        batch, reason = _parse_as(TelemetryBatch, site, payload)
        if batch is None:
            await self._reject(client, topic, site, payload, reason, received)
            return
        try:
            result = await asyncio.to_thread(store_batch, self.sessions, batch, received)
        except SQLAlchemyError as exc:
            log.error("could not store telemetry %s (%s); the edge will resend it", batch.id, exc)
            await asyncio.sleep(1.0)
            return
        self.telemetry_batches += 1
        ack = Ack(
            site=batch.site,
            acked_id=batch.id,
            device=batch.device,
            asset=batch.asset,
            seq=batch.seq,
            event_time=batch.event_time,
            time=self.clock(),
            result=result,
        )
        await client.publish(self.topics.ack(batch.site), ack.to_json(), qos=1)

    async def _reject(
        self,
        client: aiomqtt.Client,
        topic: str,
        site: str | None,
        payload: bytes,
        reason: str,
        received: datetime,
    ) -> None:
        message_id = _loose_id(payload)
        try:
            row = await asyncio.to_thread(
                dead_letter,
                self.sessions,
                source="mqtt",
                topic=topic,
                message_id=message_id,
                payload=payload,
                reason=reason,
                received_at=received,
            )
        except SQLAlchemyError as exc:
            log.error("could not dead-letter a malformed message on %s: %s", topic, exc)
            return
        self.dead_lettered += 1
        log.warning(
            "dead-lettered a malformed event on %s (dead_letters.id=%d): %s; consumer continues",
            topic,
            row,
            reason,
        )
        if message_id and site:
            # Tell the sender we have it (in the dead-letter table) so it stops resending.
            ack = Ack(
                site=site,
                acked_id=message_id,
                time=self.clock(),
                result=AckResult.rejected,
                reason=reason[:2000],
            )
            await client.publish(self.topics.ack(site), ack.to_json(), qos=1)


M = TypeVar("M", Event, TelemetryBatch)


def _parse_as(model: type[M], site: str | None, payload: bytes) -> tuple[M | None, str]:
    if site is None:
        return None, "topic is not fieldloop/v1/{site}/..."
    if len(payload) > MAX_PAYLOAD:
        return None, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}"
    try:
        message = model.model_validate_json(payload)
    except ValidationError as exc:
        return None, _pydantic_reason(exc)
    if message.site != site:
        return None, f"site {message.site!r} in the message does not match topic site {site!r}"
    return message, ""


def _loose_id(payload: bytes) -> str | None:
    """The message id, if the payload is JSON with a usable string ``id``."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None
