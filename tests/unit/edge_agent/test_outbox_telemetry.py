"""The outbox's telemetry stream, its byte bound and drop policy, acks in bulk, the detector state
it keeps, and the upgrade from the first (events-only) layout."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.detectors import Detection
from edge_agent.outbox import Outbox, OutboxFull
from fieldloop.messages import Event, EventKind, Sample, Severity, TelemetryBatch

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def samples(n: int, metric: str = "t") -> list[Sample]:
    return [Sample(metric=metric, time=T0 + timedelta(seconds=i), value=float(i)) for i in range(n)]


def det(device: str = "d1", kind: EventKind = EventKind.fault_opened) -> Detection:
    return Detection(kind, "r1", "hot", Severity.major, device, "A1", T0, "t", 99.0, 95.0)


def test_telemetry_has_its_own_sequence_and_shares_the_publish_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    ob.append("s", det(), {})
    [b1, b2] = ob.append_telemetry("s", [("d1", "A1", samples(3)), ("d2", "A2", samples(2))])
    ob.append("s", det(), {})
    [b3] = ob.append_telemetry("s", [("d1", "A1", samples(1)), ("d3", "A3", [])])
    assert (b1.seq, b2.seq, b3.seq) == (1, 1, 2)
    rows = ob.pending()
    assert [(r.stream, r.device, r.seq) for r in rows] == [
        ("event", "d1", 1),
        ("telemetry", "d1", 1),
        ("telemetry", "d2", 1),
        ("event", "d1", 2),
        ("telemetry", "d1", 2),
    ]
    assert [r.pos for r in rows] == sorted(r.pos for r in rows)
    again = TelemetryBatch.model_validate_json(rows[1].payload)
    assert again.samples == samples(3) and again.asset == "A1"
    assert ob.pending(after=rows[2].pos)[0].stream == "event"


def test_full_outbox_drops_oldest_telemetry_never_events(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=4000)
    ob.append("s", det(), {})
    for _ in range(10):
        ob.append_telemetry("s", [("d1", "A1", samples(5))])
    assert ob.size_bytes <= 4000
    assert ob.count("event") == 1
    kept = [
        TelemetryBatch.model_validate_json(r.payload).seq
        for r in ob.pending()
        if r.stream == "telemetry"
    ]
    assert kept == list(range(11 - len(kept), 11))  # the newest survive, in order
    c = ob.counters()
    assert c["dropped_telemetry_batches"] == 10 - len(kept)
    assert c["dropped_telemetry_samples"] == 5 * (10 - len(kept))


def test_events_alone_filling_the_outbox_raise_and_new_telemetry_is_counted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1500)

    def fill() -> None:
        for _ in range(100):
            ob.append("s", det(), {"t": 1.0})

    with pytest.raises(OutboxFull, match="not acked"):
        fill()
    events = ob.count("event")
    assert events > 0
    assert ob.append_telemetry("s", [("d1", "A1", samples(20))]) == []
    assert ob.counters()["dropped_telemetry_samples"] == 20
    assert ob.count("event") == events  # nothing already accepted was lost


def test_ack_many_deletes_in_one_go_and_tracks_bytes(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    batches = ob.append_telemetry("s", [(f"d{i}", "A", samples(2)) for i in range(5)])
    before = ob.size_bytes
    assert ob.ack_many([b.id for b in batches[:3]] + ["unknown"]) == 3
    assert ob.count() == 2
    assert ob.size_bytes < before
    assert ob.ack(batches[3].id) is True
    assert ob.ack(batches[3].id) is False
    ob.close()
    # the running byte count is rebuilt from the file
    assert Outbox(tmp_path / "o.sqlite").size_bytes == len(
        Outbox(tmp_path / "o.sqlite").pending()[0].payload
    )


def test_detector_state_is_stored_with_the_event_and_survives_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    assert ob.load_detector_state() is None
    ob.append("s", det(), {}, detector_state={"version": 1, "x": [1, 2]})
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    assert ob.load_detector_state() == {"version": 1, "x": [1, 2]}
    ob.save_detector_state({"version": 1, "x": []})
    assert ob.load_detector_state() == {"version": 1, "x": []}


def test_upgrades_the_first_layout_keeping_events_and_sequences(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE outbox (id TEXT PRIMARY KEY, device TEXT NOT NULL, seq INTEGER NOT NULL,
            kind TEXT NOT NULL, payload BLOB NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE device_seq (device TEXT PRIMARY KEY, seq INTEGER NOT NULL);
        CREATE TABLE open_episode (device TEXT NOT NULL, rule_id TEXT NOT NULL,
            PRIMARY KEY (device, rule_id));
        """
    )
    event = Event(
        site="s", device="d1", asset="A1", event_time=T0, seq=7, kind=EventKind.fault_opened,
        rule_id="r1", title="hot",
    )  # fmt: skip
    old.execute(
        "INSERT INTO outbox VALUES (?, 'd1', 7, 'fault_opened', ?, ?)",
        (event.id, event.to_json(), T0.isoformat()),
    )
    old.execute("INSERT INTO device_seq VALUES ('d1', 7)")
    old.execute("INSERT INTO open_episode VALUES ('d1', 'r1')")
    old.commit()
    old.close()

    ob = Outbox(path)
    [row] = ob.pending()
    assert (row.id, row.stream, row.seq) == (event.id, "event", 7)
    assert json.loads(row.payload)["rule_id"] == "r1"
    assert ob.append("s", det(), {}).seq == 8
    assert ob.open_episodes() == {("d1", "r1")}


def test_a_flush_larger_than_a_batch_may_be_goes_in_several_batches(tmp_path: Path) -> None:
    """Central refuses a batch of more than MAX_SAMPLES readings: a long flush (a slow uplink,
    many metrics) is split in order, each part its own id and seq, nothing dropped."""
    from fieldloop.messages import MAX_SAMPLES

    ob = Outbox(tmp_path / "o.sqlite", max_bytes=64 * 1024 * 1024)
    many = samples(2 * MAX_SAMPLES + 5)
    stored = ob.append_telemetry("s", [("d1", "A1", many)], {"d1": "chiller"})
    assert [b.seq for b in stored] == [1, 2, 3]
    docs = [TelemetryBatch.model_validate_json(r.payload) for r in ob.pending()]
    assert [len(d.samples) for d in docs] == [MAX_SAMPLES, MAX_SAMPLES, 5]
    assert [s for d in docs for s in d.samples] == many
    assert {d.profile for d in docs} == {"chiller"}  # so central can check the metrics


def test_a_device_without_a_known_profile_sends_none(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    ob.append_telemetry("s", [("d1", "A1", samples(2))])
    [row] = ob.pending()
    assert json.loads(row.payload)["profile"] is None
