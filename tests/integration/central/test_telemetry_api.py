"""The telemetry API on a running central over the real database (SQLite and PostgreSQL):
readings stored the way the MQTT consumer stores them (the JSON text parsed as
``ReceivedTelemetry``, then ``store_batches``), read back as series whose every bucket is
computed here independently, as the readings around a ticket's fault, and as the quarantine's
counts and latest entries. Times are relative to now: central quarantines old readings."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import add_people, assert_no_leaked_connections

from central.api.app import create_app
from central.domain.permissions import Role
from central.ingest.events import ingest
from central.ingest.telemetry import store_batches
from central.settings import Settings
from central.storage.models import TelemetryBatchRow, TelemetrySample
from fieldloop.messages import AckResult, Event, EventKind, ReceivedTelemetry

pytestmark = pytest.mark.integration

SITE = "plant-1"
PEOPLE = {
    "disp.zhao": Role.dispatcher, "sup.wang": Role.supervisor, "planner.he": Role.planner,
    "eng.li": Role.engineer, "eng.wu": Role.engineer, "cust.chen": Role.customer,
    "edge.plant": Role.device,
}  # fmt: skip

#: (epoch seconds, metric, value): a reading as this file writes and recomputes it
Reading = tuple[int, str, float]
#: (bucket start in epoch seconds, avg, min, max, count)
Bucket = tuple[int, float, float, float, int]


# --- the stack ------------------------------------------------------------------------------


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """Central without a broker (readings go in through the consumer's own function)."""
    root = f"fltest-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        db_url=db_url, broker_url=None, topic_root=root, consumer_client_id=f"central-{root}",
        rules_engine="reference", workers=False,
    )  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions, PEOPLE)  # type: ignore[attr-defined]
        yield c
    # The lifespan disposed the engine: no psycopg connection may be left for the collector.
    assert_no_leaked_connections()


def h(c: TestClient, who: str) -> dict[str, str]:
    return c.people[who]  # type: ignore[attr-defined]


def now_s() -> int:
    return int(datetime.now(UTC).timestamp())


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def iso(epoch: float) -> str:
    return at(epoch).isoformat()


def epoch(text: str) -> int:
    when = datetime.fromisoformat(text)
    assert when.tzinfo is not None, text
    return int(when.timestamp())


def payload(
    asset: str, device: str, samples: Iterable[Reading], *, site: str = SITE, seq: int = 1
) -> bytes:
    """A chiller's batch as the edge sends it (the header names the device profile)."""
    body = {
        "schema": "fieldloop.telemetry/1", "id": uuid.uuid4().hex, "site": site,
        "device": device, "asset": asset, "event_time": iso(now_s()), "seq": seq,
        "profile": "chiller",
        "samples": [
            {"metric": m, "time": iso(t), "value": v, "quality": "good"} for t, m, v in samples
        ],
    }  # fmt: skip
    return json.dumps(body).encode()


def send(c: TestClient, raw: bytes, received_at: datetime | None = None) -> ReceivedTelemetry:
    """Store ``raw`` exactly as central's MQTT consumer does."""
    batch = ReceivedTelemetry.model_validate_json(raw)
    results = store_batches(
        c.app.state.sessions,  # type: ignore[attr-defined]
        [batch],
        received_at or datetime.now(UTC),
    )
    assert results == [AckResult.committed]
    return batch


def store(c: TestClient, asset: str, device: str, readings: list[Reading]) -> None:
    for i in range(0, len(readings), 5_000):  # well under a batch's 10,000 samples
        send(c, payload(asset, device, readings[i : i + 5_000], seq=i))


def expected(
    readings: Iterable[Reading],
    start: float,
    end: float,
    step: int,
    metrics: Iterable[str] | None = None,
) -> dict[str, list[Bucket]]:
    """What the API should answer, worked out here: [start, end) widened to whole steps since
    1970-01-01 UTC, each reading in the bucket floor(t / step) * step."""
    a = int(start // step * step)
    b = int(-(-end // step) * step)
    wanted = set(metrics) if metrics is not None else None
    buckets: dict[tuple[str, int], list[float]] = defaultdict(list)
    for t, m, v in readings:
        if a <= t < b and (wanted is None or m in wanted):
            buckets[(m, t // step * step)].append(v)
    out: dict[str, list[Bucket]] = defaultdict(list)
    for (m, bucket), vs in sorted(buckets.items()):
        out[m].append((bucket, sum(vs) / len(vs), min(vs), max(vs), len(vs)))
    return dict(out)


def got(body: dict[str, Any]) -> dict[str, list[Bucket]]:
    return {
        s["metric"]: [
            (epoch(p["time"]), p["avg"], p["min"], p["max"], p["count"]) for p in s["points"]
        ]
        for s in body["series"]
    }


def same(actual: dict[str, list[Bucket]], wanted: dict[str, list[Bucket]]) -> None:
    assert actual.keys() == wanted.keys()
    for metric, buckets in wanted.items():
        assert [b[0] for b in actual[metric]] == [b[0] for b in buckets], metric
        for (_, avg, low, high, n), (_, avg2, low2, high2, n2) in zip(
            actual[metric], buckets, strict=True
        ):
            assert (low, high, n) == (low2, high2, n2), metric
            assert avg == pytest.approx(avg2, rel=1e-12), metric


def problems(r: httpx.Response) -> dict[str, str]:
    """A 422's named fields: field -> problem (the message names each of them)."""
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    fields = {f["field"]: f["problem"] for f in detail["fields"]}
    for name in fields:
        assert name in detail["message"]
    return fields


def series(c: TestClient, asset: str, who: str = "disp.zhao", **params: Any) -> dict[str, Any]:
    r = c.get(f"/assets/{asset}/telemetry", params=params, headers=h(c, who))
    assert r.status_code == 200, r.text
    return r.json()


# --- an asset's series ----------------------------------------------------------------------


def chiller_readings(base: int, n: int = 600) -> list[Reading]:
    """Every 7 s: supply and return water temperature; every 21 s the discharge temperature.
    Quarter degrees, so every sum is exact on every database."""
    out: list[Reading] = []
    for i in range(n):
        t = base + 7 * i
        out.append((t, "supply_water_temp", 6 + (i * 37 % 101) / 4))
        out.append((t, "return_water_temp", 11 + (i * 53 % 97) / 4))
        if i % 3 == 0:
            out.append((t, "discharge_temp", 80 + (i % 13) / 2))
    return out


@pytest.fixture
def readings(client: TestClient) -> tuple[int, list[Reading]]:
    """CH-01's readings over 70 minutes from a whole hour about three hours ago, and another
    asset's at the same times (which no answer about CH-01 may include)."""
    base = (now_s() - 3 * 3600) // 3600 * 3600
    ours = chiller_readings(base)
    store(client, "CH-01", "chiller-1", ours)
    store(client, "CH-02", "chiller-2", [(t, m, v + 100) for t, m, v in ours[::5]])
    return base, ours


def test_series_per_step_is_avg_min_max_count_of_the_readings(
    client: TestClient, readings: tuple[int, list[Reading]]
) -> None:
    base, ours = readings
    start, end = base, base + 3600
    body = series(client, "CH-01", **{"from": iso(start), "to": iso(end), "step": 60})

    assert (body["asset"], body["step"], body["source"]) == ("CH-01", 60, "telemetry_samples")
    assert (epoch(body["from"]), epoch(body["to"])) == (start, end)
    want = expected(ours, start, end, 60)
    same(got(body), want)
    assert len(want["supply_water_temp"]) == 60  # a point for every minute of the hour
    assert sum(b[4] for bs in want.values() for b in bs) == sum(
        1 for t, _, _ in ours if start <= t < end
    )
    # the engineer sees the same series as the dispatcher
    assert (
        series(client, "CH-01", "eng.li", **{"from": iso(start), "to": iso(end), "step": 60})[
            "series"
        ]
        == body["series"]
    )


@pytest.mark.parametrize("step", [45, 7, 300, 3600])
def test_buckets_are_whole_steps_since_the_epoch_and_the_range_is_widened_to_them(
    client: TestClient, readings: tuple[int, list[Reading]], step: int
) -> None:
    base, ours = readings
    start, end = base + 1000.25, base + 2345.5  # neither on a whole step
    body = series(client, "CH-01", **{"from": iso(start), "to": iso(end), "step": step})

    a, b = epoch(body["from"]), epoch(body["to"])
    assert a % step == 0 and b % step == 0
    assert a <= start < a + step and b - step < end <= b
    answer = got(body)
    assert all(p[0] % step == 0 for points in answer.values() for p in points)
    same(answer, expected(ours, start, end, step))
    # a reading before `from`, in the first whole step, is counted
    if any(a <= t < start for t, _, _ in ours):
        first = answer["supply_water_temp"][0]
        assert first[0] == a and first[4] == sum(
            1 for t, m, _ in ours if m == "supply_water_temp" and a <= t < a + step
        )


def test_metric_filter_is_repeatable(
    client: TestClient, readings: tuple[int, list[Reading]]
) -> None:
    base, ours = readings
    window = {"from": iso(base), "to": iso(base + 4200), "step": 300}
    two = ["discharge_temp", "supply_water_temp"]
    body = series(client, "CH-01", **window, metric=two)
    assert [s["metric"] for s in body["series"]] == two  # by name
    same(got(body), expected(ours, base, base + 4200, 300, two))

    one = series(client, "CH-01", **window, metric="return_water_temp")
    assert [s["metric"] for s in one["series"]] == ["return_water_temp"]
    assert series(client, "CH-01", **window, metric="oil_pressure")["series"] == []
    assert series(client, "CH-99", **window)["series"] == []  # no such asset: nothing, no error
    every = series(client, "CH-01", **window)
    assert {s["metric"] for s in every["series"]} == {
        "discharge_temp", "return_water_temp", "supply_water_temp",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (timedelta(minutes=5), 1),
        (timedelta(hours=1), 10),
        (timedelta(hours=6), 60),
        (timedelta(hours=24), 300),
        (timedelta(days=7), 3600),
        (timedelta(days=30), 6 * 3600),
    ],
)
def test_the_default_step_gives_at_most_500_points(
    client: TestClient, span: timedelta, step: int
) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    body = series(client, "CH-01", **{"from": (end - span).isoformat(), "to": end.isoformat()})
    assert body["step"] == step
    assert span.total_seconds() / step <= 500


def test_without_a_range_the_last_24_hours_at_5_minutes(
    client: TestClient, readings: tuple[int, list[Reading]]
) -> None:
    _, ours = readings
    before = now_s()
    body = series(client, "CH-01")
    after = now_s()
    assert body["step"] == 300
    a, b = epoch(body["from"]), epoch(body["to"])
    assert before - 86400 - 300 <= a <= after - 86400 and before <= b <= after + 300
    same(got(body), expected(ours, a, b, 300))


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"from": "2026-01-01T00:00:00"}, "from", "zone"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00"}, "to", "zone"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to", "after from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to", "after from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z", "step": 1}, "step", "18 s"),
        ({"from": "yesterday"}, "query.from", "datetime"),
        ({"step": 0}, "query.step", "1"),
    ],
)
def test_a_wrong_query_is_refused_naming_the_field(
    client: TestClient, params: dict[str, Any], field: str, says: str
) -> None:
    r = client.get("/assets/CH-01/telemetry", params=params, headers=h(client, "disp.zhao"))
    fields = problems(r)
    assert list(fields) == [field]
    assert says in fields[field]


def test_readings_are_for_staff(client: TestClient) -> None:
    c = client
    for who in ("cust.chen", "edge.plant"):
        r = c.get("/assets/CH-01/telemetry", headers=h(c, who))
        assert r.status_code == 403, (who, r.text)
    assert c.get("/assets/CH-01/telemetry").status_code == 401
    for who in ("eng.li", "disp.zhao", "sup.wang", "planner.he"):
        assert c.get("/assets/CH-01/telemetry", headers=h(c, who)).status_code == 200, who


# --- a ticket's window ----------------------------------------------------------------------


def fault_event(asset: str, device: str, when: datetime, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "site": SITE, "device": device, "asset": asset, "event_time": when, "seq": 1,
        "kind": EventKind.fault_opened, "rule_id": "chiller.discharge_temp.high",
        "title": "Discharge temperature high", "metric": "discharge_temp", "value": 97.5,
        "threshold": 95.0, "readings": {"discharge_temp": 97.5},
    }  # fmt: skip
    fields.update(kw)
    return Event.model_validate(fields)


def raise_ticket(c: TestClient, event: Event) -> int:
    """The ticket the edge's event raises, through the consumer's own ingest."""
    outcome = ingest(c.app.state.sessions, event, datetime.now(UTC))  # type: ignore[attr-defined]
    assert outcome.ticket_id is not None
    return outcome.ticket_id


def window(c: TestClient, ticket: int, who: str = "disp.zhao", **params: Any) -> dict[str, Any]:
    r = c.get(f"/tickets/{ticket}/telemetry", params=params, headers=h(c, who))
    assert r.status_code == 200, r.text
    return r.json()


def raw(body: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for s in body["series"]:
        points = s["points"]
        assert all(p["count"] == 1 and p["min"] == p["avg"] == p["max"] for p in points)
        out[s["metric"]] = [(epoch(p["time"]), p["avg"]) for p in points]
    return out


def test_the_readings_around_a_sensor_raised_fault(client: TestClient) -> None:
    c = client
    fault = now_s() - 3600
    around = [
        (t, "discharge_temp", 85 + (t - fault + 7200) / 600)
        for t in range(fault - 7200, fault + 3000, 60)
    ] + [(t, "supply_water_temp", 7.5) for t in range(fault - 7200, fault + 3000, 120)]
    store(c, "CH-03", "chiller-3", around)
    store(c, "CH-04", "chiller-4", around)  # another asset's, the same times
    tid = raise_ticket(c, fault_event("CH-03", "chiller-3", at(fault)))
    cleared = fault_event(
        "CH-03", "chiller-3", at(fault + 1200), seq=2, kind=EventKind.fault_cleared, value=88.0
    )
    assert raise_ticket(c, cleared) == tid  # the clearing event is the ticket's too

    body = window(c, tid)

    assert (body["ticket"], body["asset"], body["source"], body["step"]) == (
        tid, "CH-03", "readings", None,
    )  # fmt: skip
    f = body["fault"]
    assert (f["source"], f["metric"], f["value"], f["threshold"], f["kind"], f["rule_id"]) == (
        "edge", "discharge_temp", 97.5, 95.0, "fault_opened", "chiller.discharge_temp.high",
    )  # fmt: skip
    assert epoch(f["time"]) == fault  # the opening event's time, not the clear's
    assert (epoch(body["from"]), epoch(body["to"])) == (fault - 3600, fault + 1800)
    inside = [(t, m, v) for t, m, v in around if fault - 3600 <= t < fault + 1800]
    assert body["readings"] == len(inside) == 60 + 30 + 30 + 15
    want: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for t, m, v in sorted(inside, key=lambda r: (r[1], r[0])):
        want[m].append((t, v))
    assert raw(body) == want

    narrow = window(c, tid, before=300, after=0)
    assert narrow["readings"] == 5 + 2  # [fault-300, fault): every 60 s and every 120 s
    assert all(t < fault for points in raw(narrow).values() for t, _ in points)


def test_a_busy_window_comes_as_a_series_over_whole_steps(client: TestClient) -> None:
    c = client
    fault = (now_s() - 3600) // 60 * 60 + 2  # not on a whole 5 s
    busy = [
        (t, m, v)
        for t in range(fault - 700, fault + 700)
        for m, v in (("discharge_temp", 90 + (t % 17) / 4), ("compressor_current", 200.25))
    ]
    store(c, "CH-05", "chiller-5", busy)
    tid = raise_ticket(c, fault_event("CH-05", "chiller-5", at(fault)))

    body = window(c, tid, before=600, after=600)

    assert (body["source"], body["step"]) == ("telemetry_samples", 5)  # 241 points a metric
    assert (epoch(body["from"]), epoch(body["to"])) == (fault - 602, fault + 603)
    assert epoch(body["fault"]["time"]) == fault
    same(got(body), expected(busy, fault - 600, fault + 600, 5))
    # what it counts is what it shows: the readings of the widened window
    assert (
        body["readings"] == 2 * 1205 == sum(p["count"] for s in body["series"] for p in s["points"])
    )

    few = window(c, tid, before=600, after=60)  # 1,320 readings: the readings themselves
    assert (few["source"], few["step"], few["readings"]) == ("readings", None, 1320)
    assert (epoch(few["from"]), epoch(few["to"])) == (fault - 600, fault + 60)


def test_a_reported_ticket_is_centred_on_when_it_was_reported(client: TestClient) -> None:
    c = client
    now = now_s()
    store(
        c, "CH-07", "chiller-7",
        [(now - 7200, "supply_water_temp", 9.0), (now - 600, "supply_water_temp", 7.0),
         (now - 300, "supply_water_temp", 8.0)],
    )  # fmt: skip
    report = {
        "location": "Plant room B1", "problem_type": "hvac", "urgency": "high",
        "description": "Chiller 7 trips on high pressure", "reporter": "Chen Jing",
        "contact": "13800000000",
    }  # fmt: skip
    r = c.post("/tickets", json=report | {"asset_id": "CH-07"}, headers=h(c, "cust.chen"))
    assert r.status_code == 201, r.text
    tid = r.json()["ticket"]["id"]
    created = c.get(f"/tickets/{tid}", headers=h(c, "sup.wang")).json()["created_at"]

    body = window(c, tid)

    assert body["fault"] == {"time": datetime.fromisoformat(created).isoformat(),
                             "source": "report"}  # fmt: skip
    assert raw(body) == {"supply_water_temp": [(now - 600, 7.0), (now - 300, 8.0)]}

    r = c.post("/tickets", json=report, headers=h(c, "cust.chen"))
    no_asset = r.json()["ticket"]["id"]
    r = c.get(f"/tickets/{no_asset}/telemetry", headers=h(c, "disp.zhao"))
    assert r.status_code == 404 and "names no asset" in r.text
    assert c.get("/tickets/999999/telemetry", headers=h(c, "disp.zhao")).status_code == 404


def test_a_ticket_window_is_for_staff_who_may_see_the_ticket(client: TestClient) -> None:
    c = client
    fault = now_s() - 600
    store(c, "CH-06", "chiller-6", [(fault - 60, "discharge_temp", 96.0)])
    tid = raise_ticket(c, fault_event("CH-06", "chiller-6", at(fault)))
    path = f"/tickets/{tid}/telemetry"
    # A customer may name any asset on a report: the readings stay with staff.
    for who in ("cust.chen", "edge.plant"):
        assert c.get(path, headers=h(c, who)).status_code == 403, who
    assert c.get(path).status_code == 401
    assert c.get(path, headers=h(c, "eng.li")).status_code == 404  # not their job
    r = c.post(f"/tickets/{tid}/dispatch", json={"engineer": "eng.li"}, headers=h(c, "disp.zhao"))
    assert r.status_code in (200, 201), r.text
    assert raw(window(c, tid, "eng.li")) == {"discharge_temp": [(fault - 60, 96.0)]}
    assert c.get(path, headers=h(c, "eng.wu")).status_code == 404
    for who in ("sup.wang", "planner.he"):
        assert window(c, tid, who)["readings"] == 1


def test_a_customers_report_does_not_open_an_assets_readings(client: TestClient) -> None:
    c = client
    store(c, "CH-08", "chiller-8", [(now_s() - 60, "discharge_temp", 99.0)])
    report = {
        "location": "Plant room B1", "problem_type": "hvac", "urgency": "low",
        "description": "curious", "reporter": "Chen Jing", "contact": "13800000000",
        "asset_id": "CH-08",
    }  # fmt: skip
    r = c.post("/tickets", json=report, headers=h(c, "cust.chen"))
    assert r.status_code == 201, r.text
    tid = r.json()["ticket"]["id"]
    assert c.get(f"/tickets/{tid}", headers=h(c, "cust.chen")).status_code == 200  # theirs
    assert c.get(f"/tickets/{tid}/telemetry", headers=h(c, "cust.chen")).status_code == 403


# --- the quarantine -------------------------------------------------------------------------

# A chiller's batch as a misbehaving gateway sends it, as JSON text (a literal NaN, which
# Python's json and the edge never write). T is a good time.
BAD_BATCH = """{"schema": "fieldloop.telemetry/1", "id": "@ID", "site": "plant-1",
"device": "chiller-9", "asset": "CH-09", "event_time": "@T", "seq": 7, "profile": "chiller",
"samples": [
 {"metric": "supply_water_temp", "time": "@T", "value": 7.25, "quality": "good"},
 {"metric": "return_water_temp", "time": "@T", "value": 12.5, "quality": "good"},
 {"metric": "discharge_temp", "time": "@T", "value": NaN, "quality": "good"},
 {"metric": "supply_water_temp", "time": "1970-01-01T00:00:05+00:00", "value": 7.0},
 {"metric": "compressor_current", "time": @MS, "value": 212.5, "quality": "good"},
 {"metric": "run_hours", "time": "@NAIVE", "value": 1234, "quality": "good"},
 {"metric": "oil_pressure", "time": "@T", "value": 3.5, "quality": "good"}
]}"""


def bad_batch(good: datetime) -> bytes:
    return (
        BAD_BATCH.replace("@ID", uuid.uuid4().hex)
        .replace("@T", good.isoformat())
        .replace("@MS", str(int(good.timestamp() * 1000)))
        .replace("@NAIVE", good.replace(tzinfo=None).isoformat())
        .encode()
    )


def quarantine(c: TestClient, who: str = "disp.zhao", **params: Any) -> dict[str, Any]:
    r = c.get("/telemetry/quarantine", params=params, headers=h(c, who))
    assert r.status_code == 200, r.text
    return r.json()


def test_bad_readings_are_quarantined_counted_and_never_served(client: TestClient) -> None:
    c = client
    good = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    received = datetime.now(UTC)
    batch = send(c, bad_batch(good), received)
    other = payload(
        "CH-10", "chiller-10", [(int(good.timestamp()), "oil_pressure", 3.0),
                                (int(good.timestamp()), "fan_speed", 50.0)], site="plant-2",
    )  # fmt: skip
    send(c, other, received)
    old = payload("CH-09", "chiller-9", [(now_s() - 26 * 3600, "oil_pressure", 1.0)], seq=1)
    send(c, old, datetime.now(UTC) - timedelta(hours=26))  # received before the default window

    body = quarantine(c)

    assert body["total"] == 7
    assert body["by_reason"] == {
        "unknown_metric": 3, "not_finite": 1, "reset_clock": 1, "ms_as_seconds": 1,
        "no_offset": 1,
    }  # fmt: skip
    assert body["by_device"][0] == {
        "site": "plant-2", "device": "chiller-10", "reason": "unknown_metric", "count": 2,
    }  # fmt: skip
    assert sorted((d["device"], d["reason"], d["count"]) for d in body["by_device"][1:]) == [
        ("chiller-9", r, 1)
        for r in ("ms_as_seconds", "no_offset", "not_finite", "reset_clock", "unknown_metric")
    ]
    assert [q["metric"] for q in body["latest"][:2]] == ["fan_speed", "oil_pressure"]  # newest

    mine = quarantine(c, device="chiller-9", limit=10)
    assert mine["total"] == 5 and len(mine["latest"]) == 5
    latest = {q["reason"]: q for q in mine["latest"]}
    assert {q["batch"] for q in latest.values()} == {batch.id}
    assert {(q["site"], q["asset"]) for q in latest.values()} == {("plant-1", "CH-09")}
    assert all(epoch(q["received_at"]) == int(received.timestamp()) for q in latest.values())
    assert latest["not_finite"]["metric"] == "discharge_temp"
    assert latest["not_finite"]["value"].lower() == "nan"
    assert "1970-01-01T00:00:05" in latest["reset_clock"]["time"]
    assert "reset clock" in latest["reset_clock"]["detail"]
    assert latest["ms_as_seconds"]["metric"] == "compressor_current"
    assert str(int(good.timestamp() * 1000)) in latest["ms_as_seconds"]["time"]
    assert "milliseconds" in latest["ms_as_seconds"]["detail"]
    assert good.isoformat() in latest["ms_as_seconds"]["detail"]  # what it would have been
    assert latest["no_offset"]["metric"] == "run_hours"
    assert "no UTC offset" in latest["no_offset"]["detail"]
    assert latest["unknown_metric"]["metric"] == "oil_pressure"
    assert "profile" in latest["unknown_metric"]["detail"]

    assert quarantine(c, site="plant-2")["by_reason"] == {"unknown_metric": 2}
    assert len(quarantine(c, limit=2)["latest"]) == 2
    assert quarantine(c, limit=0)["latest"] == []
    later, hour = received + timedelta(seconds=1), timedelta(hours=1)
    assert quarantine(c, **{"from": later.isoformat(), "to": (later + hour).isoformat()}) == {
        "from": later.isoformat(), "to": (later + hour).isoformat(), "total": 0,
        "by_reason": {}, "by_device": [], "latest": [],
    }  # fmt: skip
    day_ago = (received - timedelta(hours=30)).isoformat()
    assert quarantine(c, **{"from": day_ago})["by_reason"]["unknown_metric"] == 4

    # The inbox row counts both; only the good readings are in the store, and are served.
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        row = s.get(TelemetryBatchRow, batch.id)
        assert row is not None
        assert (row.samples, row.quarantined, row.profile) == (2, 5, "chiller")
        stored = s.execute(
            select(func.count())
            .select_from(TelemetrySample)
            .where(TelemetrySample.c.asset == "CH-09")
        ).scalar_one()
    assert stored == 2
    start = good - timedelta(hours=1)
    served = series(c, "CH-09", **{"from": start.isoformat(), "to": received.isoformat(),
                                   "step": 60})  # fmt: skip
    t = int(good.timestamp())
    assert got(served) == {
        "return_water_temp": [(t // 60 * 60, 12.5, 12.5, 12.5, 1)],
        "supply_water_temp": [(t // 60 * 60, 7.25, 7.25, 7.25, 1)],
    }
    assert series(c, "CH-10", **{"from": start.isoformat()})["series"] == []


def test_the_quarantine_is_for_those_who_run_the_sites(client: TestClient) -> None:
    c = client
    for who in ("eng.li", "cust.chen", "edge.plant"):
        r = c.get("/telemetry/quarantine", headers=h(c, who))
        assert r.status_code == 403, (who, r.text)
    assert c.get("/telemetry/quarantine").status_code == 401
    for who in ("disp.zhao", "sup.wang", "planner.he"):
        assert quarantine(c, who)["total"] == 0
    r = c.get(
        "/telemetry/quarantine", params={"from": "2026-01-01T00:00:00"}, headers=h(c, "sup.wang")
    )
    assert "zone" in problems(r)["from"]
    r = c.get(
        "/telemetry/quarantine",
        params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=h(c, "sup.wang"),
    )
    assert "after from" in problems(r)["to"]
    r = c.get("/telemetry/quarantine", params={"limit": 1001}, headers=h(c, "sup.wang"))
    assert list(problems(r)) == ["query.limit"]
