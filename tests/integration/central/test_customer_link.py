"""The customer's private link through the real app on SQLite and PostgreSQL: a ticket reported
by a customer comes with a follow link; the page and the JSON show progress but never the
engineers' notes; the page's forms reject (only with a reason), confirm and rate once; a replaced
or unknown link is 404; whatever the customer typed is escaped on the page; every step the
customer takes is in the history under ``customer:...`` and the chain verifies."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from support import add_people

from central.api.app import create_app
from central.services.audit import verify
from central.settings import Settings

pytestmark = pytest.mark.integration

SCRIPT = "<script>alert('x')</script>"
REPORT = {
    "location": "Building A, room 301 <b>east</b>",
    "problem_type": "hvac",
    "urgency": "high",
    "description": f"Air conditioner blows warm air {SCRIPT}\nsince this morning",
    "reporter": "Chen Jing",
    "contact": "+86 138 0000 0000",
}
SECRET_NOTE = "internal: compressor contactor burnt, customer overloaded the circuit"
STEP_NOTE = "internal: parked in the loading bay"


class Api:
    def __init__(self, client: TestClient, people: dict[str, dict[str, str]]) -> None:
        self.client = client
        self.people = people

    def post(self, path: str, who: str, body: dict[str, Any] | None = None) -> Response:
        return self.client.post(path, json=body or {}, headers=self.people[who])

    def ok(self, path: str, who: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.post(path, who, body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def ticket(self, tid: int) -> dict[str, Any]:
        r = self.client.get(f"/tickets/{tid}", headers=self.people["sup.wang"])
        assert r.status_code == 200, r.text
        return r.json()

    def report(self, **changes: str) -> tuple[int, str]:
        created = self.ok("/tickets", "cust.chen", {**REPORT, **changes})
        url = created["follow_url"]
        assert url.startswith("/t/flc_")
        return created["ticket"]["id"], url.removeprefix("/t/")

    def form(self, path: str, data: dict[str, Any] | None = None) -> Response:
        return self.client.post(path, data=data or {}, follow_redirects=False)

    def to_in_progress(self, tid: int) -> None:
        self.ok(f"/tickets/{tid}/dispatch", "disp.zhao", {"engineer": "eng.li"})
        for step in ("accept", "depart", "arrive"):
            self.ok(f"/tickets/{tid}/{step}", "eng.li")
        self.ok(f"/tickets/{tid}/start", "eng.li", {"note": STEP_NOTE})

    def to_pending_verification(self, tid: int, report: str) -> None:
        self.ok(f"/tickets/{tid}/complete", "eng.li", {"report": report})
        self.ok(f"/tickets/{tid}/request-verification", "eng.li")
        assert self.ticket(tid)["state"]["key"] == "pending_verification"

    def audit_ok(self) -> None:
        with self.client.app.state.sessions() as s:  # type: ignore[attr-defined]
            report = verify(s)
        assert report.ok, [str(b) for b in report.broken]
        assert report.tickets >= 1


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    # no decision rules: these tests are about intake, not classification
    app = create_app(Settings(db_url=db_url, broker_url=None, rules_dir=None, workers=False))
    with TestClient(app) as client:
        yield Api(client, add_people(app.state.sessions))


def status_line(page: str) -> str:
    start = page.index("Status 状态:")
    return page[start : page.index("</p>", start)]


def test_the_follow_link_shows_progress_in_chinese_but_never_the_notes(api: Api) -> None:
    tid, token = api.report(title="Warm air in 301")

    page = api.client.get(f"/t/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f"#{tid} Warm air in 301" in page.text
    assert "新建" in status_line(page.text)
    assert "no-referrer" in page.text  # the token must not leak to other sites

    api.to_in_progress(tid)
    api.ok(f"/tickets/{tid}/notes", "eng.li", {"text": SECRET_NOTE})
    assert SECRET_NOTE in [h["note"] for h in api.ticket(tid)["history"]]  # it is recorded

    tracked = api.client.get(f"/track/{token}")
    assert tracked.status_code == 200, tracked.text
    progress = tracked.json()
    assert progress["ticket_id"] == tid
    assert progress["state"] == {"key": "in_progress", "en": "In progress", "zh": "服务中"}
    assert progress["engineer"] == "eng.li"
    assert (progress["can_confirm"], progress["can_rate"]) == (False, False)
    steps = progress["steps"]
    assert [s["to_state"] for s in steps] == [
        "new",
        "dispatched",
        "accepted",
        "en_route",
        "on_site",
        "in_progress",
    ]
    assert all(s["note"] is None and s["data"] == {} for s in steps)
    assert "note" not in [s["action"] for s in steps]
    assert SECRET_NOTE not in tracked.text and STEP_NOTE not in tracked.text
    assert "compressor contactor" not in tracked.text

    page = api.client.get(f"/t/{token}")
    assert "服务中" in status_line(page.text) and "eng.li" in page.text
    assert SECRET_NOTE not in page.text and STEP_NOTE not in page.text
    assert "验收通过" not in page.text  # nothing to confirm yet
    api.audit_ok()


def test_reject_confirm_and_rate_through_the_page(api: Api) -> None:
    tid, token = api.report()
    api.to_in_progress(tid)
    api.to_pending_verification(tid, "replaced the contactor")
    page = api.client.get(f"/t/{token}").text
    assert "待验收" in status_line(page)
    assert f'action="/t/{token}/confirm"' in page and f'action="/t/{token}/reject"' in page
    assert "Report 完工报告: replaced the contactor" in page

    # rejecting needs a reason: the page says so and nothing changes
    for reason in (None, "   "):
        r = api.form(f"/t/{token}/reject", {} if reason is None else {"reason": reason})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("text/html")
        assert "say what is still wrong" in r.text and "请说明仍存在的问题" in r.text
        assert "待验收" in status_line(r.text)
    assert api.ticket(tid)["state"]["key"] == "pending_verification"

    r = api.form(f"/t/{token}/reject", {"reason": "still blows warm air after an hour"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/t/{token}"
    t = api.ticket(tid)
    assert (t["state"]["key"], t["reopen_count"]) == ("reopened", 1)
    assert "重开" in status_line(api.client.get(f"/t/{token}").text)
    [rejected] = [h for h in t["history"] if h["action"] == "reject"]
    assert rejected["actor"] == "customer:Chen Jing"
    assert rejected["data"]["reason"] == "still blows warm air after an hour"

    # the engineer goes back to work and asks again
    api.ok(f"/tickets/{tid}/resume", "eng.li")
    api.to_pending_verification(tid, "replaced the expansion valve too")

    r = api.form(f"/t/{token}/confirm")
    assert r.status_code == 303 and r.headers["location"] == f"/t/{token}"
    t = api.ticket(tid)
    assert t["state"]["key"] == "verified" and t["verified_at"] is not None
    page = api.client.get(f"/t/{token}").text
    assert "已验收" in status_line(page)
    assert f'action="/t/{token}/rating"' in page and "验收通过</button>" not in page

    r = api.form(f"/t/{token}/rating", {"score": "5", "comment": "fast and tidy"})
    assert r.status_code == 303 and r.headers["location"] == f"/t/{token}"
    t = api.ticket(tid)
    assert (t["csat_score"], t["csat_comment"]) == (5, "fast and tidy")
    page = api.client.get(f"/t/{token}").text
    assert "Rated 已评价 ★★★★★" in page
    assert f'action="/t/{token}/rating"' not in page

    r = api.form(f"/t/{token}/rating", {"score": "1", "comment": "changed my mind"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert "already rated 5/5" in r.text
    t = api.ticket(tid)
    assert (t["csat_score"], t["csat_comment"]) == (5, "fast and tidy")

    by_customer = [
        (h["action"], h["to_state"]) for h in t["history"] if h["actor"] == "customer:Chen Jing"
    ]
    assert by_customer == [
        ("reject", "reopened"),
        ("confirm", "verified"),
        ("rated", "verified"),
    ]
    tracked = api.client.get(f"/track/{token}").json()
    assert (tracked["csat_score"], tracked["can_rate"], tracked["can_confirm"]) == (5, False, False)
    api.audit_ok()


def test_confirming_before_the_work_is_done_is_refused_on_the_page(api: Api) -> None:
    tid, token = api.report()
    r = api.form(f"/t/{token}/confirm")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("text/html")
    assert "cannot confirm a ticket that is new" in r.text
    r = api.form(f"/t/{token}/rating", {"score": "4"})
    assert r.status_code == 422
    assert "once it is completed" in r.text
    t = api.ticket(tid)
    assert (t["state"]["key"], t["csat_score"]) == ("new", None)
    assert [h["action"] for h in t["history"]] == ["created"]
    api.audit_ok()


def test_an_unknown_or_replaced_link_is_404(api: Api) -> None:
    tid, old = api.report()
    for path in ("/t/flc_not-a-real-token", "/track/flc_not-a-real-token", "/t/", "/track/x"):
        assert api.client.get(path).status_code == 404, path
    assert api.form("/t/flc_not-a-real-token/confirm").status_code == 404

    assert api.client.get(f"/t/{old}").status_code == 200
    r = api.post(f"/tickets/{tid}/customer-link", "disp.zhao")
    assert r.status_code == 201, r.text
    new = r.json()["follow_url"].removeprefix("/t/")
    assert new.startswith("flc_") and new != old

    for path in (f"/t/{old}", f"/track/{old}"):
        assert api.client.get(path).status_code == 404, path
    assert api.form(f"/t/{old}/reject", {"reason": "x"}).status_code == 404
    assert api.form(f"/t/{old}/rating", {"score": "5"}).status_code == 404
    assert api.client.get(f"/t/{new}").status_code == 200
    assert api.client.get(f"/track/{new}").json()["ticket_id"] == tid

    # only staff issue links; the customer cannot mint one
    assert api.post(f"/tickets/{tid}/customer-link", "cust.chen").status_code == 403
    [issued] = [h for h in api.ticket(tid)["history"] if h["action"] == "customer_link"]
    assert issued["actor"] == "disp.zhao"
    api.audit_ok()


def test_what_the_customer_typed_is_escaped_on_the_page(api: Api) -> None:
    tid, token = api.report(title=f"Warm air {SCRIPT}")
    created = api.ticket(tid)
    assert created["title"] == f"Warm air {SCRIPT}"  # stored as typed

    page = api.client.get(f"/t/{token}").text
    assert "<script" not in page.lower()
    assert "<b>east</b>" not in page
    assert html.escape(f"Warm air {SCRIPT}") in page
    assert html.escape(REPORT["location"]) in page

    # the title taken from the description's first line is escaped the same way
    tid2, token2 = api.report()
    assert api.ticket(tid2)["title"] == f"Air conditioner blows warm air {SCRIPT}"
    page2 = api.client.get(f"/t/{token2}").text
    assert "<script" not in page2.lower()
    assert html.escape(SCRIPT) in page2

    # and after the engineer's report and the customer's own words go in
    api.to_in_progress(tid)
    api.to_pending_verification(tid, f"done {SCRIPT}")
    r = api.form(f"/t/{token}/reject", {"reason": f"no {SCRIPT}"})
    assert r.status_code == 303
    api.ok(f"/tickets/{tid}/resume", "eng.li")
    api.to_pending_verification(tid, f"really done {SCRIPT}")
    assert api.form(f"/t/{token}/confirm").status_code == 303
    assert api.form(f"/t/{token}/rating", {"score": "3", "comment": SCRIPT}).status_code == 303
    page = api.client.get(f"/t/{token}").text
    assert "<script" not in page.lower()
    assert html.escape(f"really done {SCRIPT}") in page
    assert api.ticket(tid)["csat_comment"] == SCRIPT
    api.audit_ok()


def test_a_customer_with_a_long_name_can_confirm_through_the_link_on_postgresql(
    pg_url: str,
) -> None:
    long_name = ("Chen Jing, facilities coordinator, Building A east wing " * 3)[:128]
    app = create_app(Settings(db_url=pg_url, broker_url=None, rules_dir=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, add_people(app.state.sessions))
        tid, token = api.report(reporter=long_name)
        assert api.ticket(tid)["reporter"] == long_name  # accepted and stored at intake
        api.to_in_progress(tid)
        api.to_pending_verification(tid, "replaced the contactor")
        r = api.form(f"/t/{token}/confirm")
        assert r.status_code == 303, r.text
        assert api.ticket(tid)["state"]["key"] == "verified"
