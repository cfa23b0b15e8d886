"""edge_agent.outbox: the durable, restart-safe outbox on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.detectors import Detection
from edge_agent.outbox import Outbox
from fieldloop.messages import COMM_RULE_ID, Event, EventKind, Severity

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
RULE = "chiller.discharge_temp.high"


def det(
    device: str = "chiller-1",
    kind: EventKind = EventKind.fault_opened,
    *,
    t: float = 0,
    rule_id: str = RULE,
    value: float | None = 97.0,
) -> Detection:
    return Detection(
        kind=kind,
        rule_id=rule_id,
        title="Discharge temperature high",
        severity=Severity.major,
        device=device,
        asset=device.upper(),
        time=T0 + timedelta(seconds=t),
        metric="discharge_temp",
        value=value,
        threshold=95.0,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edge" / "outbox.db"


@pytest.fixture
def outbox(db_path: Path) -> Iterator[Outbox]:
    ob = Outbox(db_path)
    yield ob
    ob.close()


def reopen(ob: Outbox) -> Outbox:
    ob.close()
    return Outbox(ob.path)


def test_creates_the_file_and_its_directory(db_path, outbox):
    assert db_path.is_file()
    assert outbox.count() == 0
    assert outbox.pending() == []
    assert outbox.open_episodes() == set()


def test_append_returns_a_complete_event(outbox):
    event = outbox.append(
        "demo-site", det(), {"discharge_temp": 97.0, "supply_water_temp": 7.1}, location="B1"
    )
    assert isinstance(event, Event)
    assert event.site == "demo-site"
    assert event.device == "chiller-1"
    assert event.asset == "CHILLER-1"
    assert event.seq == 1
    assert event.kind is EventKind.fault_opened
    assert event.rule_id == RULE
    assert event.severity is Severity.major
    assert event.title == "Discharge temperature high"
    assert event.location == "B1"
    assert event.metric == "discharge_temp"
    assert event.value == 97.0
    assert event.threshold == 95.0
    assert event.event_time == T0
    assert event.readings == {"discharge_temp": 97.0, "supply_water_temp": 7.1}
    assert outbox.count() == 1


def test_seq_is_1_2_3_per_device_independently(outbox):
    seqs = [
        (d, outbox.append("s", det(d, t=i), {}).seq)
        for i, d in enumerate(["a", "a", "b", "a", "b", "c", "b"])
    ]
    assert seqs == [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2), ("c", 1), ("b", 3)]


def test_seq_continues_after_close_and_reopen(outbox):
    assert [outbox.append("s", det("a"), {}).seq for _ in range(3)] == [1, 2, 3]
    assert outbox.append("s", det("b"), {}).seq == 1
    ob2 = reopen(outbox)
    try:
        assert ob2.append("s", det("a"), {}).seq == 4
        assert ob2.append("s", det("b"), {}).seq == 2
        assert ob2.append("s", det("new"), {}).seq == 1
    finally:
        ob2.close()


def test_seq_continues_even_when_every_event_was_acked(outbox):
    for _ in range(2):
        e = outbox.append("s", det("a"), {})
        assert outbox.ack(e.id)
    assert outbox.count() == 0
    ob2 = reopen(outbox)
    try:
        assert ob2.append("s", det("a"), {}).seq == 3
    finally:
        ob2.close()


def test_pending_returns_oldest_first_and_payloads_parse(outbox):
    appended = [outbox.append("s", det(d, t=i), {"x": float(i)}) for i, d in enumerate("abab")]
    rows = outbox.pending()
    assert [r.id for r in rows] == [e.id for e in appended]
    assert [(r.device, r.seq) for r in rows] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    for row, original in zip(rows, appended, strict=True):
        assert isinstance(row.payload, bytes)
        parsed = Event.model_validate_json(row.payload)
        assert parsed == original
        assert parsed.id == row.id
        assert parsed.seq == row.seq
        assert b'"schema":"fieldloop.event/1"' in row.payload


def test_pending_respects_limit(outbox):
    ids = [outbox.append("s", det(), {}).id for _ in range(5)]
    assert [r.id for r in outbox.pending(limit=2)] == ids[:2]


def test_pending_survives_reopen(outbox):
    ids = [outbox.append("s", det(), {}).id for _ in range(3)]
    ob2 = reopen(outbox)
    try:
        assert [r.id for r in ob2.pending()] == ids
        assert ob2.count() == 3
    finally:
        ob2.close()


def test_ack_deletes_exactly_once(outbox):
    e1 = outbox.append("s", det(), {})
    e2 = outbox.append("s", det(), {})
    assert outbox.ack(e1.id) is True
    assert outbox.ack(e1.id) is False
    assert [r.id for r in outbox.pending()] == [e2.id]
    assert outbox.count() == 1


def test_ack_of_unknown_id_is_false_and_harmless(outbox):
    e = outbox.append("s", det(), {})
    assert outbox.ack("0190d1e2-0000-7000-8000-000000000000") is False
    assert [r.id for r in outbox.pending()] == [e.id]


def test_ack_is_durable_across_reopen(outbox):
    e1 = outbox.append("s", det(), {})
    e2 = outbox.append("s", det(), {})
    outbox.ack(e1.id)
    ob2 = reopen(outbox)
    try:
        assert [r.id for r in ob2.pending()] == [e2.id]
        assert ob2.ack(e1.id) is False
    finally:
        ob2.close()


def test_open_episodes_track_opening_and_clearing(outbox):
    outbox.append("s", det("a", EventKind.fault_opened), {})
    outbox.append("s", det("b", EventKind.fault_opened), {})
    outbox.append("s", det("a", EventKind.comm_lost, rule_id=COMM_RULE_ID, value=None), {})
    assert outbox.open_episodes() == {("a", RULE), ("b", RULE), ("a", COMM_RULE_ID)}
    outbox.append("s", det("a", EventKind.fault_cleared), {})
    assert outbox.open_episodes() == {("b", RULE), ("a", COMM_RULE_ID)}
    outbox.append("s", det("a", EventKind.comm_restored, rule_id=COMM_RULE_ID, value=None), {})
    assert outbox.open_episodes() == {("b", RULE)}


def test_maintenance_due_is_not_an_episode_the_edge_keeps_open(outbox):
    # a due date is never cleared by the edge: tracking it as open would only grow the table
    outbox.append("s", det("a", EventKind.maintenance_due, rule_id="pm.quarterly"), {})
    assert outbox.open_episodes() == set()
    assert outbox.count("event") == 1


def test_open_episode_is_recorded_once(outbox):
    outbox.append("s", det("a"), {})
    outbox.append("s", det("a"), {})
    assert outbox.open_episodes() == {("a", RULE)}
    outbox.append("s", det("a", EventKind.fault_cleared), {})
    assert outbox.open_episodes() == set()


def test_clearing_without_an_open_episode_is_fine(outbox):
    e = outbox.append("s", det("a", EventKind.fault_cleared), {})
    assert e.seq == 1
    assert outbox.open_episodes() == set()


def test_acking_does_not_close_an_episode(outbox):
    e = outbox.append("s", det("a"), {})
    assert outbox.ack(e.id)
    assert outbox.open_episodes() == {("a", RULE)}


def test_open_episodes_survive_reopen(outbox):
    outbox.append("s", det("a"), {})
    outbox.append("s", det("b"), {})
    outbox.append("s", det("b", EventKind.fault_cleared), {})
    ob2 = reopen(outbox)
    try:
        assert ob2.open_episodes() == {("a", RULE)}
        ob2.append("s", det("a", EventKind.fault_cleared), {})
    finally:
        ob2.close()
    ob3 = Outbox(outbox.path)
    try:
        assert ob3.open_episodes() == set()
    finally:
        ob3.close()


def test_rejected_event_rolls_back_and_does_not_consume_a_seq(outbox):
    outbox.append("s", det("a"), {})
    with pytest.raises(ValidationError):
        outbox.append("s", det("a", value=float("nan")), {})
    with pytest.raises(ValidationError):
        outbox.append("s", det("a"), {"x": float("inf")})
    # the failed appends left nothing behind and no transaction open
    assert outbox.count() == 1
    assert outbox.append("s", det("a"), {}).seq == 2
    assert outbox.count() == 2


def test_rows_are_committed_for_other_connections(outbox, db_path):
    e = outbox.append("s", det("a"), {})
    other = sqlite3.connect(db_path)
    try:
        rows = other.execute("SELECT id, device, seq, stream FROM outbox").fetchall()
        seq = other.execute(
            "SELECT seq FROM device_seq WHERE device = 'a' AND stream = 'event'"
        ).fetchone()
    finally:
        other.close()
    assert rows == [(e.id, "a", 1, "event")]
    assert seq == (1,)


def test_outbox_uses_wal_journal(outbox, db_path):
    other = sqlite3.connect(db_path)
    try:
        (mode,) = other.execute("PRAGMA journal_mode").fetchone()
    finally:
        other.close()
    assert mode == "wal"


def test_event_ids_are_unique(outbox):
    ids = {outbox.append("s", det(), {}).id for _ in range(50)}
    assert len(ids) == 50
