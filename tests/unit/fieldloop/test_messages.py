"""fieldloop.messages (wire schema v1) and fieldloop.ids (UUIDv7)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from fieldloop import ids
from fieldloop.ids import new_id, uuid7
from fieldloop.messages import (
    CLEARING_KINDS,
    OPENING_KINDS,
    Ack,
    AckResult,
    Event,
    EventKind,
    Sample,
    Severity,
    SiteStatus,
    TelemetryBatch,
    encode_telemetry,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def event_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "0190d1e2-3f4a-7b00-8c00-000000000001",
        "site": "demo-site",
        "device": "chiller-1",
        "asset": "CH-01",
        "event_time": T0,
        "seq": 7,
        "kind": EventKind.fault_opened,
        "rule_id": "chiller.discharge_temp.high",
        "severity": Severity.critical,
        "title": "压缩机排气温度过高",
        "location": "Building A, plant room B1",
        "metric": "discharge_temp",
        "value": 97.25,
        "threshold": 95.0,
        "readings": {"discharge_temp": 97.25, "supply_water_temp": 7.1},
    }
    fields.update(overrides)
    return fields


def event_json(**overrides: Any) -> dict[str, Any]:
    return json.loads(Event(**event_fields()).to_json()) | overrides


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [e["loc"] for e in exc.value.errors()]


# ---------------------------------------------------------------- Event


def test_event_json_round_trip():
    event = Event(**event_fields())
    data = event.to_json()
    assert isinstance(data, bytes)
    back = Event.model_validate_json(data)
    assert back == event
    assert back.event_time == T0
    assert back.event_time.utcoffset() == timedelta(0)
    assert back.readings == {"discharge_temp": 97.25, "supply_water_temp": 7.1}
    assert back.title == "压缩机排气温度过高"


def test_event_json_uses_the_schema_alias():
    doc = json.loads(Event(**event_fields()).to_json())
    assert doc["schema"] == "fieldloop.event/1"
    assert "schema_" not in doc
    assert doc["kind"] == "fault_opened"
    assert doc["severity"] == "critical"
    assert doc["seq"] == 7


def test_event_accepts_schema_by_alias_and_by_name():
    by_alias = Event.model_validate(event_fields(schema="fieldloop.event/1"))
    by_name = Event.model_validate(event_fields(schema_="fieldloop.event/1"))
    assert by_alias.schema_ == by_name.schema_ == "fieldloop.event/1"


def test_event_rejects_another_schema():
    with pytest.raises(ValidationError) as exc:
        Event.model_validate_json(json.dumps(event_json(schema="fieldloop.event/2")))
    assert error_locs(exc) == [("schema",)]


def test_event_defaults():
    event = Event(
        site="s",
        device="d",
        asset="a",
        event_time=T0,
        seq=0,
        kind="comm_lost",
        rule_id="r",
        title="",
    )
    assert event.schema_ == "fieldloop.event/1"
    assert event.severity is Severity.major
    assert event.location is None
    assert event.metric is None
    assert event.value is None
    assert event.readings == {}
    assert uuid.UUID(event.id).version == 7


def test_event_keeps_non_utc_offsets_as_the_same_instant():
    t = datetime(2024, 5, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    back = Event.model_validate_json(Event(**event_fields(event_time=t)).to_json())
    assert back.event_time == t
    assert back.event_time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError) as exc:
        Event.model_validate_json(json.dumps(event_json(sevrity="major")))
    errors = exc.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("extra_forbidden", ("sevrity",))]


def test_unknown_field_is_rejected_in_python_too():
    with pytest.raises(ValidationError):
        Event(**event_fields(extra="x"))


@pytest.mark.parametrize(
    "field", ["site", "device", "asset", "event_time", "seq", "kind", "rule_id", "title"]
)
def test_missing_field_is_rejected_naming_the_field(field):
    doc = event_json()
    del doc[field]
    with pytest.raises(ValidationError) as exc:
        Event.model_validate_json(json.dumps(doc))
    errors = exc.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("missing", (field,))]
    assert field in str(exc.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["value", "threshold"])
def test_non_finite_value_is_rejected(field, bad):
    with pytest.raises(ValidationError, match="finite") as exc:
        Event(**event_fields(**{field: bad}))
    assert error_locs(exc) == [(field,)]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_value_is_rejected_from_json(literal):
    text = json.dumps(event_json(value=None)).replace('"value": null', f'"value": {literal}')
    assert literal in text
    with pytest.raises(ValidationError, match="finite"):
        Event.model_validate_json(text)


def test_non_finite_reading_is_rejected_and_named():
    with pytest.raises(ValidationError, match="supply_water_temp"):
        Event(**event_fields(readings={"discharge_temp": 1.0, "supply_water_temp": float("nan")}))


def test_naive_datetime_is_rejected():
    with pytest.raises(ValidationError) as exc:
        Event(**event_fields(event_time=datetime(2024, 5, 1, 12, 0)))
    assert error_locs(exc) == [("event_time",)]
    with pytest.raises(ValidationError):
        Event.model_validate_json(json.dumps(event_json(event_time="2024-05-01T12:00:00")))


def test_negative_seq_is_rejected_and_zero_is_allowed():
    with pytest.raises(ValidationError) as exc:
        Event(**event_fields(seq=-1))
    assert error_locs(exc) == [("seq",)]
    assert Event(**event_fields(seq=0)).seq == 0


@pytest.mark.parametrize("field", ["site", "device", "asset", "rule_id"])
@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#b", "has space", "$SYS"])
def test_names_that_would_break_topics_are_rejected(field, bad):
    with pytest.raises(ValidationError) as exc:
        Event(**event_fields(**{field: bad}))
    assert error_locs(exc) == [(field,)]


def test_title_is_limited_to_200_characters():
    assert len(Event(**event_fields(title="x" * 200)).title) == 200
    with pytest.raises(ValidationError):
        Event(**event_fields(title="x" * 201))


def test_unknown_kind_and_severity_are_rejected():
    with pytest.raises(ValidationError) as exc:
        Event(**event_fields(kind="fault_exploded", severity="apocalyptic"))
    assert sorted(error_locs(exc)) == [("kind",), ("severity",)]


def test_event_is_frozen():
    event = Event(**event_fields())
    with pytest.raises(ValidationError):
        event.seq = 8  # type: ignore[misc]


def test_opening_and_clearing_kinds_partition_the_episode_kinds():
    assert OPENING_KINDS.isdisjoint(CLEARING_KINDS)
    assert set(EventKind) == OPENING_KINDS | CLEARING_KINDS
    assert EventKind.fault_opened in OPENING_KINDS
    assert EventKind.comm_restored in CLEARING_KINDS


# ---------------------------------------------------------------- other messages


def test_ack_round_trip():
    ack = Ack(
        site="demo-site",
        acked_id="0190d1e2-3f4a-7b00-8c00-000000000001",
        device="chiller-1",
        asset="CH-01",
        rule_id="chiller.discharge_temp.high",
        seq=7,
        event_time=T0,
        time=T0 + timedelta(milliseconds=40),
        result=AckResult.committed,
        ticket_id=42,
    )
    data = ack.to_json()
    doc = json.loads(data)
    assert doc["schema"] == "fieldloop.ack/1"
    assert doc["result"] == "committed"
    back = Ack.model_validate_json(data)
    assert back == ack
    assert back.ticket_id == 42


def test_ack_minimal_and_strict():
    ack = Ack(site="s", acked_id="x", time=T0, result="rejected", reason="malformed")
    back = Ack.model_validate_json(ack.to_json())
    assert back.result is AckResult.rejected
    assert back.reason == "malformed"
    assert back.device is None
    assert back.seq is None
    with pytest.raises(ValidationError):
        Ack.model_validate_json(json.dumps(json.loads(ack.to_json()) | {"extra": 1}))
    with pytest.raises(ValidationError):
        Ack(site="s", acked_id="x", time=datetime(2024, 1, 1), result="committed")
    with pytest.raises(ValidationError):
        Ack(site="s", acked_id="x", time=T0, result="maybe")


def test_telemetry_batch_round_trip():
    batch = TelemetryBatch(
        site="s",
        device="d",
        asset="a",
        event_time=T0,
        seq=3,
        samples=[Sample(metric="m", time=T0, value=1.5, quality="bad")],
    )
    doc = json.loads(batch.to_json())
    assert doc["schema"] == "fieldloop.telemetry/1"
    assert TelemetryBatch.model_validate_json(batch.to_json()) == batch


@pytest.mark.parametrize(
    "values",
    [
        [0.0, -0.0, 1.5, -12.3, 1e300, -1e-300, 123.456, 65538.0, 2.0**63],
        [float(i) / 7 for i in range(50)],
    ],
)
def test_encode_telemetry_is_what_the_model_would_write(values):
    """The edge's direct encoder and the model agree: same batch after parsing, every sample
    exact (floats round-trip through repr), times of one poll shared, the last time the event's."""
    t1, t2 = T0, T0 + timedelta(seconds=1)
    other = timezone(timedelta(hours=8))
    samples = [
        Sample(
            metric=f"m_{i}" if i % 3 else "温度",
            time=t1 if i < len(values) // 2 else t2.astimezone(other),
            value=v,
            quality=("good", "bad", "uncertain")[i % 3],
        )
        for i, v in enumerate(values)
    ]
    fields = {"id": new_id(), "site": "s-1", "device": 'd"1', "asset": "A\\1", "seq": 42}
    fast = encode_telemetry(**fields, samples=samples)
    model = TelemetryBatch(**fields, event_time=samples[-1].time, samples=samples)
    assert TelemetryBatch.model_validate_json(fast) == model
    assert json.loads(fast) == json.loads(model.to_json()) | {
        "event_time": samples[-1].time.isoformat(),
        "samples": [s | {"time": x.time.isoformat()} for s, x in zip(
            json.loads(model.to_json())["samples"], samples, strict=True)],
    }  # fmt: skip


def test_encode_telemetry_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="at least one sample"):
        encode_telemetry(id=new_id(), site="s", device="d", asset="a", seq=1, samples=[])


def test_site_status_is_strict():
    assert SiteStatus(site="s", online=False).online is False
    with pytest.raises(ValidationError):
        SiteStatus(site="s", online=True, colour="red")


# ---------------------------------------------------------------- ids


def test_uuid7_version_and_variant():
    for _ in range(100):
        u = uuid.UUID(new_id())
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert (u.int >> 76) & 0xF == 7
        assert (u.int >> 62) & 0b11 == 0b10


def test_new_id_is_canonical_text():
    text = new_id()
    assert len(text) == 36
    assert text == str(uuid.UUID(text))
    assert text[14] == "7"


def test_uuid7_unique_and_sorted_in_creation_order():
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert made == sorted(made)
    as_ints = [uuid.UUID(x).int for x in made]
    assert as_ints == sorted(as_ints)


def test_uuid7_timestamp_is_close_to_now():
    before = datetime.now(UTC).timestamp() * 1000
    u = uuid7()
    after = datetime.now(UTC).timestamp() * 1000
    ms = u.int >> 80
    # ids never go backwards, so the embedded time may be slightly ahead of the clock
    assert before - 2 <= ms <= after + 50


@pytest.fixture
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate the module's monotonic state so explicit times do not leak into other tests."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)


@pytest.mark.usefixtures("fresh_generator")
def test_uuid7_embeds_the_given_millisecond():
    ms = 1_714_564_800_123
    u = uuid7(now_ms=ms)
    assert u.int >> 80 == ms
    assert (u.int >> 64) & 0xFFF == 0  # first id of the millisecond


@pytest.mark.usefixtures("fresh_generator")
def test_uuid7_counter_orders_ids_of_one_millisecond():
    ms = 1_714_564_800_000
    made = [uuid7(now_ms=ms) for _ in range(10)]
    assert [u.int >> 80 for u in made] == [ms] * 10
    assert [(u.int >> 64) & 0xFFF for u in made] == list(range(10))
    assert made == sorted(made, key=lambda u: u.int)


@pytest.mark.usefixtures("fresh_generator")
def test_uuid7_never_goes_backwards_when_the_clock_does():
    a = uuid7(now_ms=2_000_000)
    b = uuid7(now_ms=1_000_000)  # clock stepped back
    assert b.int >> 80 == 2_000_000
    assert b.int > a.int


@pytest.mark.usefixtures("fresh_generator")
def test_uuid7_counter_exhaustion_borrows_the_next_millisecond():
    ms = 1_000_000
    made = [uuid7(now_ms=ms) for _ in range(4097)]
    assert made[4095].int >> 80 == ms
    assert (made[4095].int >> 64) & 0xFFF == 0xFFF
    assert made[4096].int >> 80 == ms + 1
    assert (made[4096].int >> 64) & 0xFFF == 0
    assert [u.int for u in made] == sorted(u.int for u in made)
