"""The dispatch API on a running central with the shipped rules and the real database (SQLite and
PostgreSQL): engineers' profiles and their validation, YAML and CSV imports that are all or
nothing, leave and shifts taking an engineer out of dispatch, positions reported by the app, a
backlog assigned at once, the notification feed and its SSE stream, and signed webhooks
delivered (and retried) to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import add_people, assert_no_leaked_connections

from central.api.app import create_app
from central.domain.permissions import Role
from central.domain.signatures import HEADER, SignatureRejected, verify
from central.settings import Settings
from central.storage.models import Notification

pytestmark = pytest.mark.integration

SITE = {"name": "Plant 1 / 一号厂区", "region": "pudong", "lat": 31.2304, "lon": 121.4737}
PEOPLE = {
    "disp.zhao": Role.dispatcher, "sup.wang": Role.supervisor, "cust.chen": Role.customer,
    "admin": Role.admin, "eng.li": Role.engineer, "eng.wu": Role.engineer,
    "eng.zhou": Role.engineer, "eng.sun": Role.engineer,
}  # fmt: skip
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CSV_HEADER = (
    "username,name,department,regions,skills,certifications,shifts,home_lat,home_lon,active"
)


# --- the stack ------------------------------------------------------------------------------


def _settings(db_url: str, **over: Any) -> Settings:
    root = f"fltest-{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "db_url": db_url, "broker_url": None, "topic_root": root,
        "consumer_client_id": f"central-{root}", "rules_engine": "reference",
        "workers": False,  # the tests that need the sender or the sweeper say so
    }  # fmt: skip
    values.update(over)
    return Settings(**values)


def _start(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions, PEOPLE)  # type: ignore[attr-defined]
        r = c.put("/sites/plant-1", json=SITE, headers=c.people["admin"])  # type: ignore[attr-defined]
        assert r.status_code == 200, r.text
        yield c
    # Shutdown waits for the background threads to give their connections back before the pool
    # closes (central/api/app.py): none may be left open to be found by the garbage collector.
    assert_no_leaked_connections()


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """Central without a broker: notifications are only read over the API."""
    yield from _start(_settings(db_url))


def h(c: TestClient, who: str) -> dict[str, str]:
    return c.people[who]  # type: ignore[attr-defined]


def engineer(name: str, km_north: float, **over: Any) -> dict[str, Any]:
    body = {
        "name": name, "department": "hvac", "regions": ["plant-1"], "skills": {"hvac": 3},
        "home_lat": SITE["lat"] + km_north / 111.2, "home_lon": SITE["lon"],
    }  # fmt: skip
    body.update(over)
    return body


def put_engineer(c: TestClient, username: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.put(f"/engineers/{username}", json=body, headers=h(c, "admin"))
    assert r.status_code == 200, r.text
    return r.json()


def report(c: TestClient, description: str = "办公室空调不制冷", urgency: str = "low") -> int:
    r = c.post(
        "/tickets",
        json={"location": "Plant 1, office 203", "problem_type": "other", "urgency": urgency,
              "description": description, "reporter": "Chen Jing", "contact": "13800000000",
              "site": "plant-1"},
        headers=h(c, "cust.chen"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["ticket"]["id"]


def ticket(c: TestClient, tid: int) -> dict[str, Any]:
    r = c.get(f"/tickets/{tid}", headers=h(c, "sup.wang"))
    assert r.status_code == 200, r.text
    return r.json()


def why(c: TestClient, tid: int) -> dict[str, Any]:
    r = c.get(f"/tickets/{tid}/dispatch", headers=h(c, "disp.zhao"))
    assert r.status_code == 200, r.text
    return r.json()


def engineers(c: TestClient) -> dict[str, dict[str, Any]]:
    r = c.get("/engineers", headers=h(c, "sup.wang"))
    assert r.status_code == 200, r.text
    return {e["username"]: e for e in r.json()}


def problems(r: Any) -> dict[str, str]:
    """A 422's named fields: field -> problem (the message names them all too)."""
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    fields = {f["field"]: f["problem"] for f in detail["fields"]}
    for name in fields:
        assert name in detail["message"]
    return fields


def candidate(decision: dict[str, Any], who: str) -> dict[str, Any]:
    return next(x for x in decision["candidates"] if x["engineer"] == who)


def failed_checks(cand: dict[str, Any]) -> list[str]:
    return [k["name"] for k in cand["checks"] if not k["passed"]]


# --- 1. engineers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"skills": {"hvac": 6}}, "body.skills.hvac", "5"),
        ({"skills": {"hvac": 0}}, "body.skills.hvac", "1"),
        ({"shifts": {"mon-fri": ["17:00-08:00"]}}, "body.shifts", "ends before it starts"),
        ({"shifts": {"mon-fri": ["08:00-25:00"]}}, "body.shifts", "25:00"),
        ({"shifts": {"mon-fri": ["08:00-12:00", "11:00-17:00"]}}, "body.shifts", "overlap"),
        ({"shifts": {"fri-mon": ["08:00-17:00"]}}, "body.shifts", "runs forward"),
        ({"shifts": {"funday": ["08:00-17:00"]}}, "body.shifts", "not a day"),
        ({"shifts": {"mon-fri": "08:00-17:00"}}, "body.shifts.mon-fri", "valid list"),
        ({"home_lat": 91}, "body.home_lat", "90"),
        ({"department": "HVAC team"}, "body.department", "pattern"),
        ({"skils": {"hvac": 3}}, "body.skils", "not permitted"),
        ({"name": ""}, "body.name", "at least 1"),
    ],
)
def test_put_engineer_names_the_wrong_field(
    client: TestClient, change: dict[str, Any], field: str, says: str
) -> None:
    c = client
    body = engineer("Li Wei", 1.0)
    body.update(change)
    r = c.put("/engineers/eng.li", json=body, headers=h(c, "admin"))
    fields = problems(r)
    # a bad shift is named under body.shifts (see the xfail below for the extra ".hours")
    ((named, problem),) = fields.items()
    assert named == field or (field == "body.shifts" and named.startswith("body.shifts."))
    assert says in problem
    assert c.get("/engineers", headers=h(c, "admin")).json() == []  # nothing written


def test_a_bad_shift_is_named_by_a_path_in_the_body(client: TestClient) -> None:
    c = client
    body = engineer("Li Wei", 1.0, shifts={"mon-fri": ["17:00-08:00"]})
    r = c.put("/engineers/eng.li", json=body, headers=h(c, "admin"))
    assert list(problems(r)) in (["body.shifts"], ["body.shifts.mon-fri"])


def test_put_engineer_normalises_chinese_day_names_and_replaces(client: TestClient) -> None:
    c = client
    body = engineer("Li Wei 李伟", 1.0, shifts={"周一-周五": ["08:00-12:00", "13:00-17:30"],
                                                "星期六": ["09:00-12:00"]})  # fmt: skip
    out = put_engineer(c, "eng.li", body)
    week = ["08:00-12:00", "13:00-17:30"]
    assert out["shifts"] == {"mon": week, "tue": week, "wed": week, "thu": week, "fri": week,
                             "sat": ["09:00-12:00"]}  # fmt: skip
    assert (out["open_jobs"], out["active"], out["skills"]) == (0, True, {"hvac": 3})
    # a second PUT replaces the profile as a whole, and a supervisor may do it
    r = c.put("/engineers/eng.li", json=engineer("Li Wei 李伟", 1.0, skills={"hvac": 5}),
              headers=h(c, "sup.wang"))  # fmt: skip
    assert r.status_code == 200, r.text
    listed = engineers(c)["eng.li"]
    assert (listed["skills"], listed["shifts"]) == ({"hvac": 5}, {})


def test_get_engineers_shows_open_jobs(client: TestClient) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    put_engineer(c, "eng.wu", engineer("Wu Fang", 6.0))
    assert {k: v["open_jobs"] for k, v in engineers(c).items()} == {"eng.li": 0, "eng.wu": 0}
    first = report(c, "办公室空调不制冷")
    assert ticket(c, first)["assignee"] == "eng.li"
    assert {k: v["open_jobs"] for k, v in engineers(c).items()} == {"eng.li": 1, "eng.wu": 0}
    # eng.li declines: the job is eng.wu's now, and eng.li's load drops back
    r = c.post(f"/tickets/{first}/decline", json={"reason": "busy"}, headers=h(c, "eng.li"))
    assert r.status_code == 200, r.text
    assert {k: v["open_jobs"] for k, v in engineers(c).items()} == {"eng.li": 0, "eng.wu": 1}


@pytest.mark.parametrize(
    ("who", "put", "get"),
    [
        ("eng.li", 403, 403),
        ("cust.chen", 403, 403),
        ("disp.zhao", 403, 200),
        ("sup.wang", 200, 200),
        ("admin", 200, 200),
    ],
)
def test_who_may_list_and_manage_engineers(
    client: TestClient, who: str, put: int, get: int
) -> None:
    c = client
    r = c.put("/engineers/eng.wu", json=engineer("Wu Fang", 2.0), headers=h(c, who))
    assert r.status_code == put, r.text
    if put == 403:
        assert "may not manage engineers" in r.json()["detail"]
    r = c.get("/engineers", headers=h(c, who))
    assert r.status_code == get, r.text
    if get == 200:
        assert [e["username"] for e in r.json()] == (["eng.wu"] if put == 200 else [])
    # import is for those who manage engineers too
    csv = f"{CSV_HEADER}\neng.sun,Sun Li,hvac,plant-1,hvac:3,,,,,true\n"
    r = c.post("/engineers/import", content=csv, headers={**h(c, who), "Content-Type": "text/csv"})
    assert r.status_code == put, r.text


# --- 2. import -------------------------------------------------------------------------------

YAML_FILE = """\
apiVersion: fieldloop/v1
kind: Engineers
engineers:
  - username: eng.li
    name: Li Wei 李伟
    department: hvac
    regions: [plant-1]
    skills: {hvac: 4, electrical: 2}
    certifications: {electrician-licence: 2030-06-30}
    shifts: {周一-周五: ["08:00-17:00"]}
    home_lat: 31.24
    home_lon: 121.47
  - username: eng.wu
    name: Wu Fang 吴芳
    department: hvac
    skills: {hvac: 3}
"""

CSV_FILE = f"""\
{CSV_HEADER}
eng.zhou,Zhou Jie 周杰,plumbing,plant-1;plant-2,plumbing:4;hvac:1,gas-licence:2031-01-01,mon-fri 08:00-17:00;sat 09:00-12:00,31.25,121.48,true
eng.sun,Sun Li,hvac,,hvac:2,,,,,no
"""  # noqa: E501


def test_yaml_and_csv_both_import(client: TestClient) -> None:
    c = client
    r = c.post("/engineers/import", content=YAML_FILE.encode(),
               headers={**h(c, "admin"), "Content-Type": "application/yaml"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 2, "engineers": ["eng.li", "eng.wu"]}
    r = c.post("/engineers/import", content=CSV_FILE.encode(),
               headers={**h(c, "sup.wang"), "Content-Type": "text/csv; charset=utf-8"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 2, "engineers": ["eng.zhou", "eng.sun"]}

    got = engineers(c)
    assert sorted(got) == ["eng.li", "eng.sun", "eng.wu", "eng.zhou"]
    li = got["eng.li"]
    assert li["skills"] == {"hvac": 4, "electrical": 2}
    assert li["certifications"] == {"electrician-licence": "2030-06-30"}
    assert li["shifts"] == {d: ["08:00-17:00"] for d in DAYS[:5]}
    assert (li["home_lat"], li["home_lon"], li["regions"]) == (31.24, 121.47, ["plant-1"])
    assert (got["eng.wu"]["regions"], got["eng.wu"]["shifts"]) == ([], {})
    zhou = got["eng.zhou"]
    assert (zhou["department"], zhou["regions"]) == ("plumbing", ["plant-1", "plant-2"])
    assert zhou["skills"] == {"plumbing": 4, "hvac": 1}
    assert zhou["certifications"] == {"gas-licence": "2031-01-01"}
    assert zhou["shifts"] == {**{d: ["08:00-17:00"] for d in DAYS[:5]}, "sat": ["09:00-12:00"]}
    assert (zhou["home_lat"], zhou["home_lon"], zhou["active"]) == (31.25, 121.48, True)
    sun = got["eng.sun"]
    assert (sun["active"], sun["regions"], sun["home_lat"]) == (False, [], None)

    # a CSV sent as plain text is recognised by its header; importing again updates in place
    again = CSV_FILE.replace("hvac:2", "hvac:5")
    r = c.post("/engineers/import", content=again.encode(),
               headers={**h(c, "admin"), "Content-Type": "text/plain"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert engineers(c)["eng.sun"]["skills"] == {"hvac": 5}
    assert len(engineers(c)) == 4


def _line_of(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of ``needle``."""
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(f"{needle!r} is not in the text")


_BAD_CSV_ROW4 = f"""\
{CSV_HEADER}
eng.new1,New One,hvac,plant-1,hvac:3,,,,,true
eng.new2,New Two,hvac,plant-1,hvac:2,,,,,true
eng.new3,New Three,hvac,plant-1,hvac:9,,,,,true
"""
_UNKNOWN_COLUMN = (
    "username,name,department,phone,skills\neng.new1,New One,hvac,13800000000,hvac:3\n"
)
_DUPLICATE = f"""\
{CSV_HEADER}
eng.new1,New One,hvac,plant-1,hvac:3,,,,,true
eng.new1,New One Again,hvac,plant-1,hvac:2,,,,,true
"""
_BAD_SHIFT = f"""\
{CSV_HEADER}
eng.new1,New One,hvac,plant-1,hvac:3,,,,,true
eng.new2,New Two,hvac,plant-1,hvac:3,,mon-fri 18:00-08:00,,,true
"""
_YAML_TYPO = (
    YAML_FILE.replace("eng.li", "eng.new1")
    .replace("eng.wu", "eng.new2")
    .replace("    skills: {hvac: 3}", "    skils: {hvac: 3}")
)
_YAML_LEVEL = (
    YAML_FILE.replace("eng.li", "eng.new1")
    .replace("eng.wu", "eng.new2")
    .replace("    skills: {hvac: 3}", "    skills: {hvac: 7}")
)


@pytest.mark.parametrize(
    ("body", "content_type", "where", "says"),
    [
        (_BAD_CSV_ROW4, "text/csv", "line 4, column 5", "less than or equal to 5"),
        (_UNKNOWN_COLUMN, "text/csv", "line 1, column 4", "unknown column 'phone'"),
        (_DUPLICATE, "text/csv", "line 3, column 1", "eng.new1 is listed twice (also line 2)"),
        (_BAD_SHIFT, "text/csv", "line 3, column 7", "ends before it starts"),
        (
            _YAML_TYPO, "application/yaml",
            "line {}, column {}".format(*_line_of(_YAML_TYPO, "skils")), "skils",
        ),
        (
            _YAML_LEVEL, "application/yaml",
            "line {}, column {}".format(*_line_of(_YAML_LEVEL, "hvac: 7")), "5",
        ),
    ],
    ids=["csv-level-9", "csv-unknown-column", "csv-duplicate", "csv-bad-shift", "yaml-typo",
         "yaml-level-7"],
)  # fmt: skip
def test_a_bad_row_names_line_and_column_and_writes_nothing(
    client: TestClient, body: str, content_type: str, where: str, says: str
) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    before = engineers(c)
    r = c.post("/engineers/import", content=body.encode(),
               headers={**h(c, "admin"), "Content-Type": content_type})  # fmt: skip
    fields = problems(r)
    assert where in fields, fields
    assert says in fields[where]
    assert engineers(c) == before  # all or nothing: the good rows were not written either


def test_a_yaml_typo_suggests_the_key(client: TestClient) -> None:
    c = client
    r = c.post("/engineers/import", content=_YAML_TYPO.encode(),
               headers={**h(c, "admin"), "Content-Type": "application/yaml"})  # fmt: skip
    (problem,) = problems(r).values()
    assert "skills" in problem.replace("skils", "")
    assert engineers(c) == {}


def test_a_yaml_duplicate_username_is_named_at_its_line(client: TestClient) -> None:
    c = client
    text = YAML_FILE.replace("eng.wu", "eng.li")
    dup_line = [i for i, line in enumerate(text.splitlines(), 1) if "eng.li" in line][1]
    r = c.post("/engineers/import", content=text.encode(),
               headers={**h(c, "admin"), "Content-Type": "application/yaml"})  # fmt: skip
    fields = problems(r)
    assert engineers(c) == {}
    ((where, problem),) = fields.items()
    assert "used twice" in problem
    assert where.startswith(f"line {dup_line},"), fields


def test_a_csv_non_number_position_is_named_at_its_column(client: TestClient) -> None:
    c = client
    text = f"{CSV_HEADER}\neng.new1,New One,hvac,plant-1,hvac:3,,,north,121.4,true\n"
    r = c.post("/engineers/import", content=text.encode(),
               headers={**h(c, "admin"), "Content-Type": "text/csv"})  # fmt: skip
    fields = problems(r)
    assert engineers(c) == {}
    ((where, problem),) = fields.items()
    assert where == "line 2, column 8" and "home_lat" in problem, fields


# --- 3. leave and shifts ---------------------------------------------------------------------


def test_leave_takes_the_nearer_engineer_out_of_dispatch(client: TestClient) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    put_engineer(c, "eng.wu", engineer("Wu Fang", 6.0))
    now = datetime.now(UTC)
    url = "/engineers/eng.li/leave"
    # refused: an end before the start, a time without a zone, someone without a profile, a role
    bad = {"starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()}
    r = c.post(url, json=bad, headers=h(c, "disp.zhao"))
    (field,) = problems(r)
    assert field.endswith("ends_at")
    naive = {"starts_at": "2026-01-01T08:00:00", "ends_at": "2026-01-02T08:00:00"}
    assert list(problems(c.post(url, json=naive, headers=h(c, "disp.zhao")))) == [
        "body.starts_at", "body.ends_at",
    ]  # fmt: skip
    leave = {"starts_at": (now - timedelta(hours=1)).isoformat(),
             "ends_at": (now + timedelta(hours=2)).astimezone().isoformat(),
             "reason": "年假 / annual leave"}  # fmt: skip
    assert c.post("/engineers/eng.sun/leave", json=leave, headers=h(c, "admin")).status_code == 404
    assert c.post(url, json=leave, headers=h(c, "eng.li")).status_code == 403
    # a leave that is over already changes nothing
    past = {"starts_at": (now - timedelta(days=3)).isoformat(),
            "ends_at": (now - timedelta(days=2)).isoformat()}  # fmt: skip
    assert c.post(url, json=past, headers=h(c, "disp.zhao")).status_code == 201
    first = report(c, "会议室空调不制冷")
    assert ticket(c, first)["assignee"] == "eng.li"

    r = c.post(url, json=leave, headers=h(c, "disp.zhao"))
    assert r.status_code == 201, r.text
    assert r.json()["engineer"] == "eng.li"
    tid = report(c, "办公室空调不制冷")
    t = ticket(c, tid)
    assert (t["state"]["key"], t["assignee"]) == ("dispatched", "eng.wu")
    decision = why(c, tid)["decisions"][0]
    assert decision["chosen"] == ["eng.wu"]
    li = candidate(decision, "eng.li")
    assert li["eligible"] is False and failed_checks(li) == ["on_shift"]
    assert [o["ticket"] for o in c.get("/me/offers", headers=h(c, "eng.wu")).json()] == [tid]
    assert tid not in [o["ticket"] for o in c.get("/me/offers", headers=h(c, "eng.li")).json()]


def _shift_excluding_now() -> dict[str, list[str]]:
    """Today's only shift, in the sites' time zone (UTC by default), at hours that are not now."""
    now = datetime.now(UTC)
    day = DAYS[now.weekday()]
    if now.hour < 12:
        return {day: [f"{now.hour + 2:02d}:00-00:00"]}  # later today, to midnight
    return {day: [f"00:00-{now.hour - 1:02d}:00"]}  # over an hour ago


def test_an_engineer_off_shift_is_skipped(client: TestClient) -> None:
    c = client
    shifts = _shift_excluding_now()
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0, shifts=shifts))
    put_engineer(c, "eng.wu", engineer("Wu Fang", 6.0))  # no shifts: always on
    tid = report(c, "办公室空调不制冷")
    assert ticket(c, tid)["assignee"] == "eng.wu"
    decision = why(c, tid)["decisions"][0]
    li = candidate(decision, "eng.li")
    assert li["eligible"] is False and failed_checks(li) == ["on_shift"]
    # on a round-the-clock shift eng.li, the nearer, is offered the next one
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0, shifts={"mon-sun": ["00:00-00:00"]}))
    assert ticket(c, report(c, "走廊空调不制冷"))["assignee"] == "eng.li"


# --- 4. the engineer's position --------------------------------------------------------------


def test_a_reported_position_beats_a_nearer_home_base(client: TestClient) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 4.0))
    put_engineer(c, "eng.wu", engineer("Wu Fang", 25.0))
    first = report(c, "办公室空调不制冷")
    assert ticket(c, first)["assignee"] == "eng.li"  # from the home bases
    r = c.post(f"/tickets/{first}/decline", json={"reason": "busy"}, headers=h(c, "eng.li"))
    assert r.status_code == 200 and ticket(c, first)["assignee"] == "eng.wu"
    c.post(f"/tickets/{first}/decline", json={"reason": "no"}, headers=h(c, "eng.wu"))

    here = {"lat": SITE["lat"] + 0.001, "lon": SITE["lon"], "accuracy_m": 12}
    r = c.post("/me/location", json=here, headers=h(c, "eng.wu"))
    assert r.status_code == 204, r.text
    wu = engineers(c)["eng.wu"]
    assert (wu["lat"], wu["lon"]) == (here["lat"], here["lon"])
    assert wu["location_at"] is not None and wu["home_lat"] == pytest.approx(
        SITE["lat"] + 25.0 / 111.2
    )
    tid = report(c, "会议室空调不制冷")
    assert ticket(c, tid)["assignee"] == "eng.wu"
    decision = why(c, tid)["decisions"][0]
    assert candidate(decision, "eng.wu")["distance_km"] < 0.5
    assert candidate(decision, "eng.li")["distance_km"] > 3


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        ("disp.zhao", {"lat": 31.2, "lon": 121.4}, 403),
        ("cust.chen", {"lat": 31.2, "lon": 121.4}, 403),
        ("sup.wang", {"lat": 31.2, "lon": 121.4}, 403),
        ("eng.li", {"lat": 91, "lon": 121.4}, 422),
        ("eng.li", {"lat": 31.2, "lon": -181}, 422),
        ("eng.sun", {"lat": 31.2, "lon": 121.4}, 404),  # an engineer with no profile
    ],
)
def test_who_may_report_a_position(
    client: TestClient, who: str, body: dict[str, float], status: int
) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    r = c.post("/me/location", json=body, headers=h(c, who))
    assert r.status_code == status, r.text
    if status == 422:
        (field,) = problems(r)
        assert field == ("body.lat" if body["lat"] == 91 else "body.lon")
    li = engineers(c)["eng.li"]
    assert (li["lat"], li["lon"], li["location_at"]) == (None, None, None)


# --- 5. a backlog at once --------------------------------------------------------------------


def test_a_backlog_is_assigned_at_once(client: TestClient) -> None:
    c = client
    reports = ["办公室空调不制冷", "会议室空调不制冷", "走廊空调滴水", "机房空调异响"]
    waiting = [report(c, d) for d in reports]  # nobody to send them to yet
    for tid in waiting:
        w = why(c, tid)
        assert (w["needs_dispatcher"], w["offers"]) == (True, [])
        assert ticket(c, tid)["state"]["key"] == "new"
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    put_engineer(c, "eng.wu", engineer("Wu Fang", 6.0))
    put_engineer(c, "eng.zhou", engineer("Zhou Jie", 0.5, department="plumbing",
                                         skills={"plumbing": 4}))  # fmt: skip

    r = c.post("/dispatch/batch", json={}, headers=h(c, "eng.li"))
    assert r.status_code == 403, r.text
    assert c.post("/dispatch/batch", json={}, headers=h(c, "cust.chen")).status_code == 403
    assert c.post("/dispatch/batch", json={}, headers=h(c, "admin")).status_code == 403
    assert all(why(c, tid)["needs_dispatcher"] for tid in waiting)  # the refusals changed nothing

    r = c.post("/dispatch/batch", json={}, headers=h(c, "disp.zhao"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(int(k) for k in out["assigned"]) == waiting
    assert set(out["assigned"].values()) <= {"eng.li", "eng.wu"}  # never the plumber
    assert out["unassigned"] == []
    assert isinstance(out["total_cost"], float) and isinstance(out["greedy_cost"], float)
    assert out["total_cost"] <= out["greedy_cost"] + 1e-6
    assert out["greedy_assigned"] == len(waiting)

    offered: dict[str, list[int]] = {}
    for tid in waiting:
        who = out["assigned"][str(tid)]
        offered.setdefault(who, []).append(tid)
        w = why(c, tid)
        assert w["needs_dispatcher"] is False and w["offered_to"] == [who]
        last = w["decisions"][-1]
        assert (last["kind"], last["actor"], last["chosen"]) == ("batch", "disp.zhao", [who])
        assert w["offers"][-1]["engineer"] == who and w["offers"][-1]["state"] == "open"
        t = ticket(c, tid)
        assert (t["state"]["key"], t["assignee"]) == ("dispatched", who)
    for who, tids in offered.items():
        mine = c.get("/me/offers", headers=h(c, who)).json()
        assert sorted(o["ticket"] for o in mine) == sorted(tids)
        assert engineers(c)[who]["open_jobs"] == len(tids)
    # the queue is empty now: a second batch assigns nothing
    r = c.post("/dispatch/batch", json={}, headers=h(c, "sup.wang"))
    assert r.status_code == 200 and r.json()["assigned"] == {}


# --- 6. notifications ------------------------------------------------------------------------


def _recipients(c: TestClient, ids: list[int]) -> dict[int, str]:
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        rows = s.execute(select(Notification).where(Notification.id.in_(ids))).scalars()
        return {n.id: n.recipient for n in rows}


def test_notifications_for_the_engineer_and_the_dispatcher(client: TestClient) -> None:
    c = client
    nobody = report(c, "空调异响")  # no engineers: the dispatcher is alerted
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    tid = report(c, "办公室空调不制冷")

    mine = c.get("/me/notifications", headers=h(c, "eng.li")).json()
    assert [(n["kind"], n["ticket"]) for n in mine] == [("offer", tid)]
    offer = mine[0]
    assert (
        offer["payload"]["ticket"] == tid and offer["payload"]["title"] == ticket(c, tid)["title"]
    )
    assert offer["payload"]["expires_at"] and offer["at"]
    desk = c.get("/me/notifications", headers=h(c, "disp.zhao")).json()
    assert [(n["kind"], n["ticket"]) for n in desk] == [("alert", nobody)]
    assert desk[0]["payload"]["why"]
    assert _recipients(c, [offer["id"], desk[0]["id"]]) == {
        offer["id"]: "eng.li", desk[0]["id"]: "role:dispatcher",
    }  # fmt: skip
    # a customer sees neither
    assert c.get("/me/notifications", headers=h(c, "cust.chen")).json() == []

    # after= gives only what is newer than the last one the app has
    after = c.get("/me/notifications", params={"after": offer["id"]}, headers=h(c, "eng.li"))
    assert after.status_code == 200 and after.json() == []
    r = c.post(f"/tickets/{tid}/decline", json={"reason": "busy"}, headers=h(c, "eng.li"))
    assert r.status_code == 200, r.text  # nobody else: back to the dispatcher's queue
    assert c.get("/me/notifications", params={"after": offer["id"]},
                 headers=h(c, "eng.li")).json() == []  # fmt: skip
    newer = c.get("/me/notifications", params={"after": desk[0]["id"]},
                  headers=h(c, "disp.zhao")).json()  # fmt: skip
    assert [(n["kind"], n["ticket"]) for n in newer] == [("alert", tid)]
    limited = c.get("/me/notifications", params={"limit": 1}, headers=h(c, "disp.zhao")).json()
    assert [n["id"] for n in limited] == [desk[0]["id"]]
    assert c.get("/me/notifications", params={"after": -1},
                 headers=h(c, "eng.li")).status_code == 422  # fmt: skip
    assert c.get("/me/notifications").status_code == 401


def _first_frame(c: TestClient, who: str, last_event_id: int | None = None) -> dict[str, str]:
    """Open the SSE stream, read its first event, close it."""
    headers = dict(h(c, who))
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    frame: dict[str, str] = {}
    with c.stream("GET", "/me/notifications/stream", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        for line in r.iter_lines():
            if not line:
                if frame:
                    break
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            frame[key] = value
    return frame


def test_the_sse_stream_yields_offers_and_resumes(client: TestClient) -> None:
    c = client
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    first = report(c, "办公室空调不制冷")
    second = report(c, "会议室空调不制冷")
    ids = [n["id"] for n in c.get("/me/notifications", headers=h(c, "eng.li")).json()]
    assert len(ids) == 2

    frame = _first_frame(c, "eng.li")
    assert set(frame) == {"id", "event", "data"}
    assert (frame["id"], frame["event"]) == (str(ids[0]), "offer")
    data = json.loads(frame["data"])
    assert (data["id"], data["kind"], data["ticket"]) == (ids[0], "offer", first)
    assert data["payload"]["title"] == ticket(c, first)["title"]

    # a reconnecting app resumes after the last id it had, and misses nothing
    frame = _first_frame(c, "eng.li", last_event_id=ids[0])
    assert (frame["id"], frame["event"]) == (str(ids[1]), "offer")
    assert json.loads(frame["data"])["ticket"] == second

    # an offer written while the stream is open arrives on it
    later = threading.Timer(0.5, lambda: report(c, "走廊空调滴水"))
    later.start()
    try:
        frame = _first_frame(c, "eng.li", last_event_id=ids[1])
    finally:
        later.join(10)
    assert frame["event"] == "offer" and int(frame["id"]) > ids[1]
    assert json.loads(frame["data"])["ticket"] not in (first, second)

    # the dispatcher's stream carries the role's alerts
    c.post(f"/tickets/{first}/decline", json={"reason": "busy"}, headers=h(c, "eng.li"))
    frame = _first_frame(c, "disp.zhao")
    assert frame["event"] == "alert" and json.loads(frame["data"])["ticket"] == first


# --- 7. signed webhooks ----------------------------------------------------------------------


class Receiver:
    """A real HTTP server that answers deliveries with the statuses it is told to, in turn
    (200 once the list is used up), and keeps every request it got."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.port = free_port()
        self.statuses = list(statuses or [])
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((time.time(), dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _row(c: TestClient, nid: int) -> Notification:
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        row = s.get(Notification, nid)
        assert row is not None
        s.expunge(row)
        return row


def _wait(probe: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def hooked(db_url: str, receiver: Receiver) -> Iterator[TestClient]:
    """Central telling the receiver of every notification, signed with s3cret."""
    yield from _start(
        _settings(db_url, notify_webhooks=[{"url": receiver.url, "secret": "s3cret"}], workers=True)
    )


def test_an_offer_reaches_a_signed_webhook(hooked: TestClient, receiver: Receiver) -> None:
    c = hooked
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    tid = report(c)
    (offer,) = c.get("/me/notifications", headers=h(c, "eng.li")).json()
    _wait(lambda: receiver.requests, 10, "the webhook delivery")
    _wait(lambda: _row(c, offer["id"]).delivered_at is not None, 5, "delivered_at")

    (at, headers, body), *more = receiver.requests
    assert more == []  # delivered once
    assert headers["FieldLoop-Delivery"] == str(offer["id"])
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)
    assert (message["id"], message["kind"], message["recipient"], message["ticket"]) == (
        offer["id"], "offer", "eng.li", tid,
    )  # fmt: skip
    assert message["payload"] == offer["payload"]
    signed = f"{offer['id']}.".encode() + body
    t = verify(headers[HEADER], signed, ["s3cret"], now=at)
    assert abs(t - at) <= 5
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify(headers[HEADER], signed, ["another secret"], now=at)
    with pytest.raises(SignatureRejected, match="mismatch"):
        verify(headers[HEADER], body, ["s3cret"], now=at)  # the id is part of what is signed
    with pytest.raises(SignatureRejected, match="outside the replay window"):
        verify(headers[HEADER], signed, ["s3cret"], now=at + 3600)
    row = _row(c, offer["id"])
    assert (row.attempts, row.last_error) == (1, None)


@pytest.fixture
def failing_receiver(receiver: Receiver) -> Receiver:
    receiver.statuses = [500, 500]  # the first two attempts fail
    return receiver


@pytest.fixture
def hooked_by_hand(db_url: str, receiver: Receiver) -> Iterator[TestClient]:
    """As ``hooked``, with no sender running: the test sends, on a clock it moves."""
    yield from _start(
        _settings(
            db_url, notify_webhooks=[{"url": receiver.url, "secret": "s3cret"}], workers=False
        )
    )


def test_a_failing_webhook_is_retried_until_delivered(
    failing_receiver: Receiver, hooked_by_hand: TestClient
) -> None:
    c, receiver = hooked_by_hand, failing_receiver
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    report(c)
    (offer,) = c.get("/me/notifications", headers=h(c, "eng.li")).json()
    nid = offer["id"]
    sender = c.app.state.notification_sender  # type: ignore[attr-defined]
    t0 = datetime.now(UTC)

    async def send() -> int:
        async with httpx.AsyncClient(timeout=10) as http:
            return await sender.send_batch(None, http)

    def send_at(seconds: float) -> int:
        sender.clock = lambda: t0 + timedelta(seconds=seconds)
        return asyncio.run(send())

    assert send_at(0) == 1  # the first attempt: 500
    failed = _row(c, nid)
    assert failed.delivered_at is None and failed.attempts == 1
    assert "500" in failed.last_error
    assert send_at(0.9) == 0  # retried after 1 s ...
    assert send_at(1.0) == 1  # ... and fails again: 500
    assert send_at(2.9) == 0  # then after 2 s ...
    assert send_at(3.0) == 1  # ... delivered
    done = _row(c, nid)
    assert done.delivered_at is not None
    assert done.attempts == 3 and "500" in (done.last_error or "")
    assert len(receiver.requests) == 3
    bodies = {body for _, _, body in receiver.requests}
    assert len(bodies) == 1  # the same message each time
    for at, headers, body in receiver.requests:
        assert headers["FieldLoop-Delivery"] == str(nid)
        verify(headers[HEADER], f"{nid}.".encode() + body, ["s3cret"], now=at)
    assert send_at(3600) == 0  # delivered: not sent again
    assert len(receiver.requests) == 3
