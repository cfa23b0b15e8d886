"""The durable outbox: an event is written (and fsync'd) here before it is published, and its row
is deleted only when central acks that event id. Survives restarts and power loss (SQLite WAL with
synchronous=FULL). Also keeps per-device sequence numbers and which fault episodes are open, so a
restarted agent neither reuses a sequence number nor raises an episode twice."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge_agent.detectors import Detection
from fieldloop.ids import new_id
from fieldloop.messages import OPENING_KINDS, Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          TEXT PRIMARY KEY,
    device      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_seq (
    device TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS open_episode (
    device  TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (device, rule_id)
);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: str
    device: str
    seq: int
    payload: bytes


class Outbox:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acked-to-us event survives power loss
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def append(
        self, site: str, d: Detection, readings: dict[str, float], location: str | None = None
    ) -> Event:
        """Turn a detection into an Event with the device's next sequence number and store it,
        all in one transaction."""
        with self._tx() as db:
            row = db.execute("SELECT seq FROM device_seq WHERE device = ?", (d.device,)).fetchone()
            seq = (row[0] + 1) if row else 1
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
            db.execute(
                "INSERT INTO device_seq(device, seq) VALUES(?, ?) "
                "ON CONFLICT(device) DO UPDATE SET seq = excluded.seq",
                (d.device, seq),
            )
            db.execute(
                "INSERT INTO outbox(id, device, seq, kind, payload, created_at) "
                "VALUES(?, ?, ?, ?, ?, ?)",
                (event.id, d.device, seq, d.kind.value, event.to_json(), d.time.isoformat()),
            )
            if d.kind in OPENING_KINDS:
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

    def pending(self, limit: int = 500) -> list[OutboxRow]:
        """Unacked events, oldest first (UUIDv7 ids sort by creation)."""
        rows = self._db.execute(
            "SELECT id, device, seq, payload FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxRow(*r) for r in rows]

    def ack(self, event_id: str) -> bool:
        """Central has the event: drop it. Returns False if it was not (or no longer) here."""
        cur = self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
        return cur.rowcount > 0

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def open_episodes(self) -> set[tuple[str, str]]:
        return {tuple(r) for r in self._db.execute("SELECT device, rule_id FROM open_episode")}  # type: ignore[misc]
