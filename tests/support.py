"""Helpers the integration and end-to-end tests share: site and rule files of a test's own, and a
whole stack (broker, simulator, central, edge agent) started and stopped inside one test."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.orm import Session, sessionmaker

from central.domain.permissions import Role
from central.server import CentralServer
from central.services.users import create_user, find_user, issue_token
from central.settings import Settings
from edge_agent.agent import EdgeAgent
from fieldloop.brokers import parse_broker_url
from fieldloop.detection import load_detection
from fieldloop.profiles import Site, load_site
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import Scenario

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

#: The people the integration tests sign in as (user name -> role).
PEOPLE = {
    "disp.zhao": Role.dispatcher,
    "eng.li": Role.engineer,
    "eng.wu": Role.engineer,
    "sup.wang": Role.supervisor,
    "cust.chen": Role.customer,
    "admin": Role.admin,
    "planner.he": Role.planner,
}


def add_people(
    sessions: sessionmaker[Session], people: dict[str, Role] | None = None
) -> dict[str, dict[str, str]]:
    """Creates users with tokens; returns user name -> Authorization headers."""
    now = datetime.now(UTC)
    headers: dict[str, dict[str, str]] = {}
    with sessions() as session, session.begin():
        for name, role in (people or PEOPLE).items():
            user = find_user(session, name) or create_user(
                session, name, role, now=now, site="test-site" if role is Role.device else None
            )
            token = issue_token(session, user, now=now).token
            headers[name] = {"Authorization": f"Bearer {token}"}
    return headers


def write_site(
    directory: Path,
    *,
    port: int,
    site: str = "test-site",
    device: str = "chiller-1",
    asset: str = "CH-01",
    poll_interval: float = 0.1,
    timeout: float = 2.0,
) -> Path:
    """A site of one chiller on ``port``. The Modbus timeout is generous: on a loaded machine a
    simulator in a busy test process may answer late, and a healthy device must never look lost
    (tests of a device that is gone kill its simulator, which is refused at once)."""
    path = directory / f"{site}.yaml"
    path.write_text(
        f"""apiVersion: fieldloop/v1
kind: Site
site: {site}
location: Test plant room
profiles_dir: {REPO / "device_profiles"}
devices:
  - id: {device}
    asset: {asset}
    profile: chiller
    location: Test plant room
    modbus_tcp: {{host: 127.0.0.1, port: {port}, unit_id: 1, timeout: {timeout}, retries: 0}}
    poll_interval: {poll_interval}
""",
        encoding="utf-8",
    )
    return path


def write_rules(directory: Path, *, hold: str = "1s") -> Path:
    path = directory / "detection.yaml"
    path.write_text(
        f"""apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: chiller.discharge_temp.high
    title: Chiller discharge temperature high
    profile: chiller
    metric: discharge_temp
    above: 95
    for: {hold}
    clear_below: 90
    severity: major
""",
        encoding="utf-8",
    )
    return path


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def central_up(port: int, *, within: float = 60.0) -> None:
    """Wait until a central process on ``port`` answers /healthz."""
    import httpx

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                r = await c.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return r.status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(healthy, within=within, what=f"central on port {port} to answer /healthz")


class Stack:
    """Simulator -> edge agent -> broker -> central, all in this process, on ports of its own."""

    def __init__(
        self,
        tmp: Path,
        *,
        broker_url: str,
        db_url: str,
        topics: Topics,
        scenario: Scenario,
        sim_port: int,
        http_port: int,
        hold: str = "1s",
        resend_after: float = 2.0,
    ) -> None:
        self.tmp = tmp
        self.broker_url = broker_url
        self.db_url = db_url
        self.topics = topics
        self.site: Site = load_site(write_site(tmp, port=sim_port))
        self.rules = load_detection(write_rules(tmp, hold=hold))
        self.device = SimulatedDevice(
            profile=self.site.profiles["chiller"], scenario=scenario, unit_id=1
        )
        self.simulator = ModbusSimulator([self.device], "127.0.0.1", sim_port)
        self.central = CentralServer(
            Settings(
                db_url=db_url,
                broker_url=broker_url,
                host="127.0.0.1",
                port=http_port,
                topic_root=topics.root,
                consumer_client_id=f"central-{topics.root}",
            )
        )
        self.agent = EdgeAgent(
            self.site,
            self.rules,
            parse_broker_url(broker_url),
            tmp / "edge",
            topics=topics,
            resend_after=resend_after,
        )
        self._agent_task: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(base_url=self.central.url, timeout=10)
        self.people: dict[str, dict[str, str]] = {}

    async def __aenter__(self) -> Stack:
        await self.simulator.start()
        await self.central.start()
        self.people = add_people(self.central.app.state.sessions)
        self.http.headers.update(self.people["sup.wang"])  # reads see every ticket
        await asyncio.wait_for(self.central.app.state.consumer.connected.wait(), 10)
        self._agent_task = asyncio.create_task(self.agent.run(), name="edge-agent")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._agent_task is not None:
            self._agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._agent_task
        await self.http.aclose()
        await self.central.stop()
        await self.simulator.stop()

    async def tickets(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.http.get("/tickets", params=params)
        r.raise_for_status()
        return r.json()["items"]

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        r = await self.http.get(f"/tickets/{ticket_id}")
        r.raise_for_status()
        return r.json()

    async def act(self, ticket_id: int, action: str, as_: str, **body: Any) -> dict[str, Any]:
        r = await self.http.post(
            f"/tickets/{ticket_id}/{action}", json=body, headers=self.people[as_]
        )
        assert r.status_code in (200, 201), r.text
        return r.json()


class Processes:
    """The processes one test starts. Each runs in a process group of its own; at the test's end,
    whatever happened (a failed assert, a timeout, an exception in a fixture), every group still
    alive is killed, waited for and its pipes closed, so nothing a test started outlives it:
    no port held, no CPU taken, no pipe for the garbage collector to find in a later test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[Any]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def fieldloop(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """``fieldloop ARGS`` as a real process (so a test can kill -9 it), output to ``log``."""
        with log.open("ab") as handle:  # the child keeps its own descriptor
            return self.popen(
                [sys.executable, "-m", "fieldloop", *args],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=REPO,
            )

    def close(self) -> None:
        for proc in self.started:
            # the whole group: a process that ended may have left children behind (a rules
            # worker, a broker it started)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self.started.clear()


def outbox_rows(path: Path, stream: str | None = None) -> int:
    """Messages waiting in an edge outbox (events, telemetry or both), read the way an operator
    would (sqlite, read-only)."""
    import sqlite3

    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if stream is None:
            return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return conn.execute("SELECT count(*) FROM outbox WHERE stream = ?", (stream,)).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def write_multi_site(
    directory: Path, ports: list[int], *, poll_interval: float, timeouts: dict[int, float]
) -> Path:
    """A site of chillers, one per port (device i on ports[i]); timeouts per device index."""
    lines = [
        "apiVersion: fieldloop/v1",
        "kind: Site",
        "site: multi",
        f"profiles_dir: {REPO / 'device_profiles'}",
        "devices:",
    ]
    for i, port in enumerate(ports):
        lines += [
            f"  - id: chiller-{i}",
            f"    asset: CH-{i:02d}",
            "    profile: chiller",
            f"    modbus_tcp: {{host: 127.0.0.1, port: {port}, unit_id: 1, "
            f"timeout: {timeouts.get(i, 0.5)}, retries: 0}}",
            f"    poll_interval: {poll_interval}",
        ]
    path = directory / "multi.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_no_leaked_connections() -> None:
    """After an app's lifespan: no psycopg connection was left open for the garbage collector
    (shutdown waits for background threads to give theirs back before the pool closes)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaked = [w for w in caught if "deleted while still open" in str(w.message)]
    assert leaked == [], [str(w.message) for w in leaked]
