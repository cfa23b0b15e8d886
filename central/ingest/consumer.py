"""The MQTT consumer of edge events and telemetry.

Every delivery is treated as at-least-once: the message is committed (or found already committed)
before its ack is published, so an ack always means "central has it". A malformed message goes to
the dead-letter table with the reason and the consumer carries on. If the database is down the
message is not acked; the edge resends it later.

Events are applied one at a time, in arrival order. Telemetry comes in bursts (one batch per
device per flush): when a batch arrives, the messages already queued behind it are taken too and
all their batches stored in one transaction, so a site's flush costs one commit, not hundreds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import aiomqtt
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.ingest.events import (
    DEFAULT_POLICY,
    IngestOutcome,
    IngestPolicy,
    dead_letter,
    ingest,
)
from central.ingest.telemetry import DEFAULT_SCREENING, Screening, store_batches
from fieldloop.backoff import Backoff
from fieldloop.brokers import BrokerAddress, client_kwargs, connected
from fieldloop.messages import Ack, AckResult, Event, ReceivedTelemetry, TelemetryBatch
from fieldloop.tasks import raise_if_cancelled
from fieldloop.topics import Topics

log = logging.getLogger("fieldloop.central.ingest")

MAX_PAYLOAD = 4 * 1024 * 1024  # a telemetry batch of 10,000 samples fits
# A telemetry burst (stored in one transaction) takes at most this many queued messages, or stops
# once this many payload bytes are in: a few hundred ms of work, bounded memory.
MAX_BURST = 200
MAX_BURST_BYTES = 4 * 1024 * 1024


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
        max_burst: int = MAX_BURST,
        policy: IngestPolicy = DEFAULT_POLICY,
        group: str = "",
        screening: Screening = DEFAULT_SCREENING,
        reconnect_max: float = 30.0,
    ) -> None:
        if max_burst < 1:
            raise ValueError(
                f"max_burst must be at least 1 (1 = one message at a time), not {max_burst}"
            )
        self.broker = broker
        self.sessions = sessions
        self.topics = topics or Topics()
        self.client_id = client_id
        self.reconnect_max = reconnect_max  # the longest wait between attempts to reconnect
        self.on_outcome = on_outcome
        self.clock = clock
        self.max_burst = max_burst
        self.policy = policy
        self.group = group  # an MQTT 5 shared-subscription group: several centrals split traffic
        self.screening = screening
        self.connected = asyncio.Event()
        self.processed = 0
        self.telemetry_batches = 0
        self.dead_lettered = 0

    async def run(self) -> None:
        backoff = Backoff(cap=self.reconnect_max)
        failing = False
        while True:
            try:
                async with connected(
                    aiomqtt.Client(
                        **client_kwargs(self.broker),  # type: ignore[arg-type]
                        identifier=self.client_id,
                        **self._session(),
                    )
                ) as client:
                    events, telemetry = self._filters()
                    await client.subscribe(events, qos=1)
                    await client.subscribe(telemetry, qos=1)
                    log.info("central consuming %s and %s on %s", events, telemetry, self.broker)
                    # A burst's acks are published together (see handle_telemetry).
                    client.pending_calls_threshold = self.max_burst + 10
                    self.connected.set()
                    backoff.reset()
                    failing = False
                    async for message in client.messages:
                        raise_if_cancelled()
                        burst = [_raw(message)]
                        if self.topics.leaf_of(burst[0][0]) == "telemetry":
                            burst += await self._queued(client, len(burst[0][1]))
                        await self.handle(client, burst)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if not failing:
                    log.warning("broker %s unreachable (%s); retrying", self.broker, exc)
                    failing = True
                await asyncio.sleep(backoff.next_delay())

    def _filters(self) -> tuple[str, str]:
        """The site wildcards; in a group, as MQTT 5 shared subscriptions, so each message goes
        to one of the group's central processes."""
        events, telemetry = self.topics.all_events(), self.topics.all_telemetry()
        if self.group:
            return f"$share/{self.group}/{events}", f"$share/{self.group}/{telemetry}"
        return events, telemetry

    def _session(self) -> dict[str, object]:
        if not self.group:  # one central: its own persistent session keeps what came meanwhile
            return {"clean_session": False}
        # Several centrals split the traffic (MQTT 5). A process that dies ends its session at
        # once, so nothing waits for it: what it had not acknowledged comes back from the edge,
        # whose outbox resends until central's ack, to another process of the group.
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        return {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": True, "properties": props}

    async def _queued(self, client: aiomqtt.Client, size: int) -> list[tuple[str, bytes]]:
        """The messages already waiting on the client, up to the burst caps, without waiting for
        more: a burst is what piled up while the previous one was stored, never a delay."""
        taken: list[tuple[str, bytes]] = []
        while len(client.messages) and len(taken) + 1 < self.max_burst and size < MAX_BURST_BYTES:
            taken.append(_raw(await anext(client.messages)))  # queued: returns at once
            size += len(taken[-1][1])
        return taken

    async def handle(self, client: aiomqtt.Client, messages: Sequence[tuple[str, bytes]]) -> None:
        """Messages (topic, payload) in arrival order: events one at a time in that order, the
        telemetry batches together in one transaction."""
        telemetry, events = split_burst(self.topics, messages)
        # Events first: a ticket is what someone is waiting for; telemetry acks can wait a moment.
        for topic, payload in events:
            await self.handle_event(client, topic, payload)
        if telemetry:
            await self.handle_telemetry(client, telemetry)

    async def handle_event(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        received = self.clock()
        site = self.topics.site_of(topic)
        event, reason = _parse_as(Event, site, payload)
        if event is None:
            await self._reject(client, topic, site, payload, reason, received)
            return
        try:
            outcome = await asyncio.to_thread(ingest, self.sessions, event, received, self.policy)
        except SQLAlchemyError as exc:
            # Not acked: the edge keeps the event and resends it; nothing is lost.
            log.error("could not store event %s (%s); it will be resent by the edge", event.id, exc)
            await asyncio.sleep(1.0)
            return
        self.processed += 1
        if self.on_outcome:
            self.on_outcome(event, outcome)
        ack = ack_for(event, outcome.result, self.clock(), outcome.ticket_id)
        await client.publish(self.topics.ack(event.site), ack.to_json(), qos=1)

    async def handle_telemetry(
        self, client: aiomqtt.Client, messages: Sequence[tuple[str, bytes]]
    ) -> None:
        received = self.clock()
        batches: list[ReceivedTelemetry] = []
        for topic, payload in messages:
            site = self.topics.site_of(topic)
            batch, reason = _parse_as(ReceivedTelemetry, site, payload)
            if batch is None:
                await self._reject(client, topic, site, payload, reason, received)
            else:
                batches.append(batch)
        if not batches:
            return
        try:
            results = await asyncio.to_thread(
                store_batches, self.sessions, batches, received, self.screening
            )
        except SQLAlchemyError as exc:
            # None of them acked: the edge resends them all, and the ids make that harmless.
            log.error(
                "could not store %d telemetry batch(es) (first %s): %s; the edge will resend them",
                len(batches),
                batches[0].id,
                exc,
            )
            await asyncio.sleep(1.0)
            return
        self.telemetry_batches += len(batches)
        now = self.clock()
        acks = [ack_for(b, result, now) for b, result in zip(batches, results, strict=True)]
        # All in flight at once: one by one, each would wait a round trip for its PUBACK.
        sent = await asyncio.gather(
            *(client.publish(self.topics.ack(a.site), a.to_json(), qos=1) for a in acks),
            return_exceptions=True,
        )
        for outcome in sent:
            if isinstance(outcome, BaseException):
                raise outcome

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


M = TypeVar("M", Event, ReceivedTelemetry)


def ack_for(
    message: Event | TelemetryBatch | ReceivedTelemetry,
    result: AckResult,
    time: datetime,
    ticket_id: int | None = None,
) -> Ack:
    """The ack of a stored event or telemetry batch, echoing what identifies it for tracing
    (a telemetry ack carries no rule id: a batch is not the product of one rule)."""
    return Ack(
        site=message.site,
        acked_id=message.id,
        device=message.device,
        asset=message.asset,
        rule_id=message.rule_id if isinstance(message, Event) else None,
        seq=message.seq,
        event_time=message.event_time,
        time=time,
        result=result,
        ticket_id=ticket_id,
    )


def split_burst(
    topics: Topics, messages: Sequence[tuple[str, bytes]]
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(telemetry, everything else) of ``messages``, each in arrival order. Anything that is not
    telemetry takes the event path, which dead-letters what is not an event either."""
    telemetry: list[tuple[str, bytes]] = []
    events: list[tuple[str, bytes]] = []
    for topic, payload in messages:
        (telemetry if topics.leaf_of(topic) == "telemetry" else events).append((topic, payload))
    return telemetry, events


def _raw(message: aiomqtt.Message) -> tuple[str, bytes]:
    return str(message.topic), bytes(message.payload)  # type: ignore[arg-type]


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
