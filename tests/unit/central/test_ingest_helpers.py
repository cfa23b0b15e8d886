"""The consumer's pure helpers: one ack shape for events and telemetry, and a burst split into
telemetry and events with the arrival order kept within each."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import sessionmaker

from central.ingest.consumer import EventConsumer, ack_for, split_burst
from fieldloop.brokers import parse_broker_url
from fieldloop.messages import AckResult, Event, Sample, TelemetryBatch
from fieldloop.topics import Topics

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC)


def test_an_event_ack_echoes_the_event_and_its_ticket() -> None:
    event = Event(
        site="plant-1",
        device="chiller-1",
        asset="CH-01",
        event_time=AT,
        seq=7,
        kind="fault_opened",
        rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high",
    )
    ack = ack_for(event, AckResult.committed, NOW, ticket_id=12)
    assert ack.model_dump(exclude={"id"}) == {
        "schema_": "fieldloop.ack/1",
        "site": "plant-1",
        "acked_id": event.id,
        "device": "chiller-1",
        "asset": "CH-01",
        "rule_id": "chiller.discharge_temp.high",
        "seq": 7,
        "event_time": AT,
        "time": NOW,
        "result": AckResult.committed,
        "ticket_id": 12,
        "reason": None,
    }


def test_a_telemetry_ack_has_no_rule_and_no_ticket() -> None:
    batch = TelemetryBatch(
        site="plant-1",
        device="chiller-1",
        asset="CH-01",
        event_time=AT,
        seq=3,
        rule_id="ignored",  # a batch is not the product of one rule: not echoed
        samples=[Sample(metric="discharge_temp", time=AT, value=80.0)],
    )
    ack = ack_for(batch, AckResult.duplicate, NOW)
    assert (ack.acked_id, ack.device, ack.asset, ack.seq) == (batch.id, "chiller-1", "CH-01", 3)
    assert (ack.event_time, ack.time, ack.result) == (AT, NOW, AckResult.duplicate)
    assert ack.rule_id is None and ack.ticket_id is None and ack.reason is None


def test_a_burst_splits_into_telemetry_and_events_each_in_arrival_order() -> None:
    topics = Topics("fl")
    t, e = topics.telemetry("s1"), topics.events("s1")
    burst = [(t, b"t1"), (e, b"e1"), (topics.telemetry("s2"), b"t2"), (e, b"e2"), (t, b"t3")]
    telemetry, events = split_burst(topics, burst)
    assert [p for _, p in telemetry] == [b"t1", b"t2", b"t3"]
    assert [p for _, p in events] == [b"e1", b"e2"]


def test_what_is_not_our_telemetry_takes_the_event_path() -> None:
    # ... where it is dead-lettered with the reason, as before bursts existed.
    topics = Topics("fl")
    odd = [("other/v1/s1/telemetry", b"a"), ("fl/v1/s1/x/telemetry", b"b"), ("fl/v1/s1/ack", b"c")]
    assert split_burst(topics, odd) == ([], odd)
    assert split_burst(topics, []) == ([], [])


def test_a_burst_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_burst must be at least 1"):
        EventConsumer(parse_broker_url("mqtt://127.0.0.1:1883"), sessionmaker(), max_burst=0)
