"""The durable outbox: every event and telemetry batch is written (and fsync'd) here before it is
published, and its row is deleted only when central acks that message id end to end (a broker's
PUBACK is not durable: Mosquitto with default autosave loses queued QoS 1 messages on kill -9).

Survives restarts and power loss (SQLite WAL, synchronous=FULL). Bounded by payload bytes: when
full, the oldest telemetry goes first and is counted; events are never dropped. Also keeps the
per-device sequence numbers (one series for events, one for telemetry) and the detectors' state,
written in the same transaction as the event it produced, so a restarted agent neither reuses a
sequence number nor raises an episode twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from edge_agent.detectors import Detection
from fieldloop.ids import new_id
from fieldloop.messages import (
    MAX_SAMPLES,
    OPENING_KINDS,
    Event,
    EventKind,
    SampleLike,
    encode_telemetry,
)

Stream = Literal["event", "telemetry"]
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    pos         INTEGER PRIMARY KEY AUTOINCREMENT,  -- publish order, immune to clock steps
    id          TEXT NOT NULL UNIQUE,
    stream      TEXT NOT NULL,
    device      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_stream_pos ON outbox(stream, pos);
CREATE TABLE IF NOT EXISTS device_seq (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (device, stream)
);
CREATE TABLE IF NOT EXISTS open_episode (
    device  TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (device, rule_id)
);
CREATE TABLE IF NOT EXISTS detector_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxRow:
    pos: int
    id: str
    stream: Stream
    device: str
    seq: int
    payload: bytes


class StoredBatch(NamedTuple):
    """A telemetry batch as stored: its message id and the device's telemetry sequence number."""

    id: str
    device: str
    seq: int


class OutboxFull(Exception):
    """The outbox holds ``max_bytes`` of events alone: nothing more can be kept safely."""


class Outbox:
    def __init__(self, path: Path | str, *, max_bytes: int = 1 << 30) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an event we hold survives power loss
        self._migrate()
        self._bytes = self._db.execute(
            "SELECT coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()[0]

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            old = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='outbox'"
            ).fetchone()
            if old:  # the first layout: events only, no stream or position
                self._db.executescript(
                    "ALTER TABLE outbox RENAME TO outbox_v1;"
                    "ALTER TABLE device_seq RENAME TO device_seq_v1;"
                )
            self._db.executescript(_SCHEMA)
            if old:
                self._db.executescript(
                    "INSERT INTO outbox(id, stream, device, seq, payload, created_at) "
                    "SELECT id, 'event', device, seq, payload, created_at FROM outbox_v1 "
                    "ORDER BY id;"
                    "INSERT INTO device_seq SELECT device, 'event', seq FROM device_seq_v1;"
                    "DROP TABLE outbox_v1; DROP TABLE device_seq_v1;"
                )
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} was written by a newer edge agent (outbox schema {version}); "
                "upgrade this agent or move the file aside"
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        size_before = self._bytes
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            self._bytes = size_before  # the running size follows the rollback too
            raise
        self._db.execute("COMMIT")

    def _next_seq(self, db: sqlite3.Connection, device: str, stream: Stream) -> int:
        row = db.execute(
            "SELECT seq FROM device_seq WHERE device = ? AND stream = ?", (device, stream)
        ).fetchone()
        seq = (row[0] + 1) if row else 1
        db.execute(
            "INSERT INTO device_seq(device, stream, seq) VALUES(?, ?, ?) "
            "ON CONFLICT(device, stream) DO UPDATE SET seq = excluded.seq",
            (device, stream, seq),
        )
        return seq

    def _insert(
        self,
        db: sqlite3.Connection,
        stream: Stream,
        id: str,
        device: str,
        seq: int,
        payload: bytes,
        created_at: str,
    ) -> None:
        db.execute(
            "INSERT INTO outbox(id, stream, device, seq, payload, created_at) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            (id, stream, device, seq, payload, created_at),
        )
        self._bytes += len(payload)

    # -- writing --------------------------------------------------------------------------------

    def append(
        self,
        site: str,
        d: Detection,
        readings: dict[str, float],
        location: str | None = None,
        detector_state: dict[str, Any] | None = None,
    ) -> Event:
        """Turn a detection into an Event with the device's next event sequence number and store
        it, with the detectors' state that produced it, in one transaction."""
        return self.append_many(site, [d], readings, location, detector_state)[0]

    def append_many(
        self,
        site: str,
        detections: Sequence[Detection],
        readings: dict[str, float],
        location: str | None = None,
        detector_state: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Store several detections (of one reading) and the detectors' state in one
        transaction. Events are never dropped: if they alone fill the outbox, OutboxFull is
        raised (after telemetry was dropped to make room) and nothing of this call is stored."""
        with self._tx() as db:
            events = [self._store_event(db, site, d, readings, location) for d in detections]
            if detector_state is not None:
                self._save_state(db, detector_state)
        return events

    def _store_event(
        self,
        db: sqlite3.Connection,
        site: str,
        d: Detection,
        readings: dict[str, float],
        location: str | None,
    ) -> Event:
        seq = self._next_seq(db, d.device, "event")
        event = Event(
            id=new_id(),
            site=site,
            device=d.device,
            asset=d.asset,
            event_time=d.time,
            seq=seq,
            kind=d.kind,
            rule_id=d.rule_id,
            severity=d.severity,
            title=d.title,
            location=location,
            metric=d.metric,
            value=d.value,
            threshold=d.threshold,
            readings=readings,
        )
        payload = event.to_json()
        self._make_room(db, len(payload))
        self._insert(db, "event", event.id, d.device, seq, payload, d.time.isoformat())
        # (a maintenance due date is not an episode the edge ever clears)
        if d.kind in OPENING_KINDS and d.kind is not EventKind.maintenance_due:
            db.execute(
                "INSERT OR IGNORE INTO open_episode(device, rule_id) VALUES(?, ?)",
                (d.device, d.rule_id),
            )
        else:
            db.execute(
                "DELETE FROM open_episode WHERE device = ? AND rule_id = ?",
                (d.device, d.rule_id),
            )
        return event

    def append_telemetry(
        self,
        site: str,
        batches: Iterable[tuple[str, str, Sequence[SampleLike]]],
        profiles: Mapping[str, str] | None = None,
    ) -> list[StoredBatch]:
        """Store one telemetry batch per (device, asset, samples), all in one transaction (one
        fsync per flush, not per device); a device's samples beyond ``MAX_SAMPLES`` go in more
        batches (central refuses a larger one). ``profiles`` names each device's profile, so
        central can check the metrics. Drops the oldest telemetry when full, counting it."""
        stored: list[StoredBatch] = []
        profiles = profiles or {}
        with self._tx() as db:
            for device, asset, samples in _split(batches):
                batch = StoredBatch(new_id(), device, self._next_seq(db, device, "telemetry"))
                payload = encode_telemetry(
                    id=batch.id, site=site, device=device, asset=asset, seq=batch.seq,
                    samples=samples, profile=profiles.get(device),
                )  # fmt: skip
                if not self._make_room(db, len(payload), allow_fail=True):
                    self._count(db, "dropped_telemetry_batches", 1)
                    self._count(db, "dropped_telemetry_samples", len(samples))
                    continue
                self._insert(
                    db, "telemetry", batch.id, device, batch.seq, payload,
                    samples[-1].time.isoformat(),
                )  # fmt: skip
                stored.append(batch)
        return stored

    def _make_room(self, db: sqlite3.Connection, size: int, allow_fail: bool = False) -> bool:
        """Delete the oldest telemetry until ``size`` more bytes fit under max_bytes."""
        while self._bytes + size > self.max_bytes:
            oldest = db.execute(
                "SELECT pos, length(payload), payload FROM outbox WHERE stream = 'telemetry' "
                "ORDER BY pos LIMIT 1"
            ).fetchone()
            if oldest is None:
                if allow_fail:
                    return False
                raise OutboxFull(
                    f"{self.path}: {self._bytes} bytes of unacked events reach max_bytes "
                    f"({self.max_bytes}); central has not acked for a long time"
                )
            db.execute("DELETE FROM outbox WHERE pos = ?", (oldest[0],))
            self._bytes -= oldest[1]
            samples = len(json.loads(oldest[2])["samples"])
            self._count(db, "dropped_telemetry_batches", 1)
            self._count(db, "dropped_telemetry_samples", samples)
        return True

    def _count(self, db: sqlite3.Connection, name: str, n: int) -> None:
        db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def _save_state(self, db: sqlite3.Connection, state: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO detector_state(id, state) VALUES(1, ?) "
            "ON CONFLICT(id) DO UPDATE SET state = excluded.state",
            (json.dumps(state, separators=(",", ":")),),
        )

    def save_detector_state(self, state: dict[str, Any]) -> None:
        with self._tx() as db:
            self._save_state(db, state)

    # -- reading and acking ---------------------------------------------------------------------

    def pending(self, limit: int = 500, after: int = 0) -> list[OutboxRow]:
        """Unacked messages in the order they were stored, after position ``after``."""
        rows = self._db.execute(
            "SELECT pos, id, stream, device, seq, payload FROM outbox WHERE pos > ? "
            "ORDER BY pos LIMIT ?",
            (after, limit),
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    def ack(self, message_id: str) -> bool:
        """Central has the message: drop it. False if it was not (or no longer) here."""
        return self.ack_many([message_id]) == 1

    def ack_many(self, message_ids: Iterable[str]) -> int:
        """Drop several acked messages in one transaction (acks arrive in bursts)."""
        ids = list(message_ids)
        if not ids:
            return 0
        deleted = 0
        with self._tx() as db:
            for mid in ids:
                row = db.execute(
                    "DELETE FROM outbox WHERE id = ? RETURNING length(payload)", (mid,)
                ).fetchone()
                if row is not None:
                    deleted += 1
                    self._bytes -= row[0]
        return deleted

    def count(self, stream: Stream | None = None) -> int:
        if stream is None:
            return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return self._db.execute(
            "SELECT count(*) FROM outbox WHERE stream = ?", (stream,)
        ).fetchone()[0]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def counters(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def open_episodes(self) -> set[tuple[str, str]]:
        return {tuple(r) for r in self._db.execute("SELECT device, rule_id FROM open_episode")}  # type: ignore[misc]

    def load_detector_state(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM detector_state WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None


def _split(
    batches: Iterable[tuple[str, str, Sequence[SampleLike]]],
) -> Iterator[tuple[str, str, Sequence[SampleLike]]]:
    for device, asset, samples in batches:
        for start in range(0, len(samples), MAX_SAMPLES):
            yield device, asset, samples[start : start + MAX_SAMPLES]
