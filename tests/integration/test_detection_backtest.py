"""`fieldloop rules replay --detection` as a planner runs it: the real command, as a process,
over 30 days of readings stored in central's database (SQLite and PostgreSQL), comparing a
lowered threshold with the live rules; and its errors for a wrong file and a wrong flag."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from central.storage.db import make_engine, migrate
from central.storage.types import UTCDateTime
from central.telemetry.layout import Layout, detect

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIELDLOOP = Path(sys.executable).with_name("fieldloop")
T0 = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30

RULES = """\
apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: chiller.discharge_temp.high
    title: Discharge temperature high
    profile: chiller
    metric: discharge_temp
    above: 95.0
    for: 5s
    clear_below: 90.0
  - id: chiller.discharge_temp.sensor
    type: implausible
    title: Discharge temperature sensor fault
    profile: chiller
    metric: discharge_temp
    for: 10s
    severity: minor
"""


def minute(day: int, hh: int, mm: int) -> datetime:
    return T0 + timedelta(days=day, hours=hh, minutes=mm)


def discharge(device: str, t: datetime) -> tuple[float, str]:
    """85 degC, except: chiller-1 at 93.5 (between 92 and 95) on day 3 from 10:00 to 10:30 and
    reading bad (99) on day 20 from 08:00 to 08:10; chiller-2 at 97 on day 10, 14:00-14:20."""
    if device == "chiller-1" and minute(3, 10, 0) <= t < minute(3, 10, 30):
        return 93.5, "good"
    if device == "chiller-1" and minute(20, 8, 0) <= t < minute(20, 8, 10):
        return 99.0, "bad"
    if device == "chiller-2" and minute(10, 14, 0) <= t < minute(10, 14, 20):
        return 97.0, "good"
    return 85.0, "good"


DEVICES = [("chiller-1", "CH-01"), ("chiller-2", "CH-02"), ("pump-9", "P-09")]


def rows() -> Iterator[dict[str, Any]]:
    for i in range(DAYS * 24 * 60):  # one reading a minute
        t = T0 + timedelta(minutes=i)
        for device, asset in DEVICES:
            value, quality = discharge(device, t)
            yield {"time": t, "site": "plant-a", "device": device, "asset": asset,
                   "metric": "discharge_temp", "value": value, "quality": quality}  # fmt: skip
            if i % 10 == 0:  # a metric no rule watches
                yield {"time": t, "site": "plant-a", "device": device, "asset": asset,
                       "metric": "supply_water_temp", "value": 7.0, "quality": "good"}  # fmt: skip


def batch(n: int, device: str, asset: str, profile: str | None, day: int) -> dict[str, Any]:
    t = T0 + timedelta(days=day)
    return {"id": f"b{n}", "site": "plant-a", "device": device, "asset": asset,
            "profile": profile, "seq": n, "event_time": t, "received_at": t,
            "samples": 1}  # fmt: skip


@pytest.fixture(scope="module")
def readings() -> list[dict[str, Any]]:
    return list(rows())


@pytest.fixture
def db(any_store_url: str, readings: list[dict[str, Any]]) -> str:
    """Central's database, migrated, with 30 days of readings of three devices; the edges
    reported chiller-1's and chiller-2's profiles (chiller-1's last report names none, an earlier
    one another profile), pump-9's never. Times are bound as central's store binds them (on
    SQLite, naive UTC text)."""
    engine = make_engine(any_store_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            if detect(conn) is Layout.partitioned:
                from central.telemetry.partitions import days_of, ensure_partitions

                ensure_partitions(conn, days_of(T0 + timedelta(days=d) for d in range(DAYS)))
            conn.execute(
                text("INSERT INTO telemetry_batches (id, site, device, asset, profile, seq, "
                     "event_time, received_at, samples) VALUES (:id, :site, :device, :asset, "
                     ":profile, :seq, :event_time, :received_at, :samples)")
                .bindparams(bindparam("event_time", type_=UTCDateTime()),
                            bindparam("received_at", type_=UTCDateTime())),
                [batch(1, "chiller-1", "CH-01", "old_chiller", 0),
                 batch(2, "chiller-1", "CH-01", "chiller", 5),
                 batch(3, "chiller-1", "CH-01", None, 9),
                 batch(4, "chiller-2", "CH-02", "chiller", 1),
                 batch(5, "pump-9", "P-09", None, 1)],
            )  # fmt: skip
            conn.execute(
                text("INSERT INTO telemetry_samples (time, site, device, asset, metric, value, "
                     "quality) VALUES (:time, :site, :device, :asset, :metric, :value, :quality)")
                .bindparams(bindparam("time", type_=UTCDateTime())),
                readings,
            )  # fmt: skip
    finally:
        engine.dispose()
    return any_store_url


def replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FIELDLOOP), "rules", "replay", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip


def test_a_lowered_threshold_over_30_days_of_stored_readings(db: str, tmp_path: Path) -> None:
    base = tmp_path / "detection.yaml"
    base.write_text(RULES, encoding="utf-8")
    cand = tmp_path / "candidate.yaml"
    cand.write_text(RULES.replace("above: 95.0", "above: 92.0"), encoding="utf-8")
    window = ("--from", "2026-10-01", "--to", "2026-10-31T00:00:00+00:00")

    r = replay("--db", db, "--detection", cand, "--base", base, *window)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    high = "chiller.discharge_temp.high"
    assert lines[:2] == [
        f"ONLY CANDIDATE  2026-10-04T10:01:00Z  plant-a/CH-01 (chiller-1)  {high}  fault_opened"
        "  discharge_temp 93.5 (threshold 92)",
        f"ONLY CANDIDATE  2026-10-04T10:30:00Z  plant-a/CH-01 (chiller-1)  {high}  fault_cleared"
        "  discharge_temp 85 (threshold 92)",
    ]  # fmt: skip
    table = [line.split() for line in lines[3:-2]]  # then the skipped devices, the summary
    assert table[0] == ["RULE", "SITE", "ASSET", "EVENT", "BASE", "CANDIDATE", "ONLY", "BASE",
                        "ONLY", "CANDIDATE"]  # fmt: skip
    sensor = "chiller.discharge_temp.sensor"
    assert table[1:] == [
        [high, "plant-a", "CH-01", "fault_opened", "0", "1", "0", "1"],
        [high, "plant-a", "CH-01", "fault_cleared", "0", "1", "0", "1"],
        [high, "plant-a", "CH-02", "fault_opened", "1", "1", "0", "0"],
        [high, "plant-a", "CH-02", "fault_cleared", "1", "1", "0", "0"],
        [sensor, "plant-a", "CH-01", "fault_opened", "1", "1", "0", "0"],  # the bad readings
        [sensor, "plant-a", "CH-01", "fault_cleared", "1", "1", "0", "0"],
    ]
    readings = DAYS * 24 * 60
    assert lines[-2] == (
        f"skipped 1 device(s) with no known profile ({readings} reading(s)): plant-a/pump-9; "
        "their edges have not reported one: give their site's file with --site-file"
    )
    assert lines[-1] == (
        f"backtest 2026-10-01T00:00:00Z .. 2026-10-31T00:00:00Z: 2 device(s), {2 * readings} "
        "reading(s); base raised 4 event(s), candidate 6; 2 only by the candidate, 0 only by "
        f"the base; base {base}, candidate {cand}"
    )

    # the same as JSON, the window given as --days before --to, chiller-2 only
    r = replay("--db", db, "--detection", cand, "--base", base, "--to", "2026-10-31",
               "--days", "30", "--device", "chiller-2", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["from"], doc["to"]) == ("2026-10-01T00:00:00Z", "2026-10-31T00:00:00Z")
    assert (doc["devices"], doc["readings"]) == (1, readings)
    assert doc["raised"] == {"base": 2, "candidate": 2}
    assert doc["only_candidate"] == doc["only_base"] == []
    assert doc["profiles"] == {"reported": 1, "site_file": 0}


def test_a_site_file_supplies_the_profile_the_edge_never_reported(db: str, tmp_path: Path) -> None:
    base = tmp_path / "detection.yaml"
    base.write_text(RULES, encoding="utf-8")
    site = tmp_path / "plant-a.yaml"
    site.write_text(
        "apiVersion: fieldloop/v1\nkind: Site\nsite: plant-a\n"
        f"profiles_dir: {REPO / 'device_profiles'}\ndevices:\n"
        "  - {id: pump-9, asset: P-09, profile: chiller,\n"
        "     modbus_tcp: {host: 127.0.0.1, port: 1502}}\n",
        encoding="utf-8",
    )  # fmt: skip
    r = replay("--db", db, "--detection", base, "--base", base, "--from", "2026-10-01",
               "--to", "2026-10-31", "--site-file", site, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["devices"] == 3
    assert doc["skipped"] == {"devices": [], "readings": 0}
    assert doc["profiles"] == {"reported": 2, "site_file": 1}


def test_a_wrong_file_a_wrong_flag_and_no_database_exit_2_saying_which(tmp_path: Path) -> None:
    """Flags and files are checked before the database is opened; a database that is not
    there is said to be so, and nothing is created."""
    db = tmp_path / "central.db"
    url = f"sqlite:///{db}"
    cand = tmp_path / "candidate.yaml"
    cand.write_text(RULES.replace("above: 95.0", "abve: 92.0"), encoding="utf-8")
    r = replay("--db", url, "--detection", cand)
    assert (r.returncode, r.stdout) == (2, "")
    assert f"{cand}:8:5: unknown key 'abve'; did you mean 'above'?" in r.stderr

    cand.write_text(RULES, encoding="utf-8")
    r = replay("--db", url, "--detection", cand, "--from", "2026-10-31", "--to", "2026-10-01")
    assert (r.returncode, r.stdout) == (2, "")
    assert "--from: the window 2026-10-31T00:00:00Z .. 2026-10-01T00:00:00Z is empty" in r.stderr
    r = replay("--db", url, "--detection", cand, "--from", "2026-10-01", "--days", "7")
    assert r.returncode == 2
    assert "argument --days: not allowed with argument --from" in r.stderr

    r = replay("--db", url, "--detection", cand)
    assert r.returncode == 2
    assert f"cannot reach the database {url}: there is no SQLite file {db}" in r.stderr
    r = replay("--db", "postgresql://fieldloop:secret@127.0.0.1:1/central", "--detection", cand)
    assert r.returncode == 2
    assert (
        "cannot reach the database postgresql+psycopg://fieldloop:***@127.0.0.1:1/central"
        in r.stderr
    )
    assert "secret" not in r.stderr
    assert not db.exists()
