"""Ticket transitions/s through the HTTP API and edge events/s into tickets, each against a bare
peer on the same database in the same run.

(a) Lifecycle steps over HTTP. Central runs as it does in production: ``CentralServer`` (uvicorn)
    in a process of its own, on a free port. N concurrent clients (httpx, keep-alive, real
    sockets), each with tickets of its own, walk every ticket through dispatch -> accept ->
    depart -> arrive -> start -> wait-parts -> resume -> complete -> request-verification ->
    cancel: ten POSTs, each with a bearer token and a fresh Idempotency-Key (token lookup,
    idempotency claim, row lock, transition, hash-chained history entry, stored response).
    The peer: a bare FastAPI app served by uvicorn the same way, in a process of its own, with one
    POST route (a plain ``def``, like central's) doing one INSERT per request into a one-table
    schema through SQLAlchemy Core on an engine from the same ``make_engine`` (same driver, pool,
    SQLite pragmas), no auth; driven by the same client loop with the same headers and bodies.
(b) Edge events into tickets: ``central.ingest.events.ingest`` (dedup by id, open / clear /
    auto-resolve / reopen the episode's ticket, audit entry) for a stream with 10 % redeliveries,
    against a raw INSERT of the same event rows into a bare table, one transaction per event both
    ways, same engine, in this process.

Rounds of ours and the peer alternate after a warm-up, so both see the same machine load; the
ratios are the figures to read. Databases: a SQLite file in a temporary directory and a fresh
PostgreSQL database (created and dropped by the bench).

    .venv/bin/python bench/ticket_transitions.py [--db sqlite|postgresql|both] [--quick]
                                                 [--clients N] [--rounds R] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import psutil
from fastapi import Body, FastAPI
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from ticket_latency import database, free_port, percentile

HOST = "127.0.0.1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET = 0.5  # ours / bare for (a)
DUPLICATE_SHARE = 0.10  # redeliveries in (b)
EVENTS_PER_ASSET = 6  # (b): open, clear, open, clear, ... per asset

GPS = {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 6.5}
DISPATCHER, SUPERVISOR = "disp.zhao", "sup.wang"
#: one ticket's walk: (path, who: "dispatcher" / "engineer" / "supervisor", body)
LIFECYCLE: list[tuple[str, str, dict[str, Any]]] = [
    ("dispatch", "dispatcher", {}),  # + the client's engineer
    ("accept", "engineer", {}),
    ("depart", "engineer", {"location": GPS}),
    ("arrive", "engineer", {"location": GPS, "note": "at the plant room"}),
    ("start", "engineer", {}),
    ("wait-parts", "engineer", {"parts": [{"part_no": "GSK-220", "quantity": 2}]}),
    ("resume", "engineer", {}),
    ("complete", "engineer", {"report": "cleaned the condenser tubes, new gasket"}),
    ("request-verification", "engineer", {}),
    ("cancel", "supervisor", {"reason": "bench: the customer withdrew"}),
]
STEPS = len(LIFECYCLE)

# The bare peers' one-table schemas, in the same database as central's.
BARE = MetaData()
BARE_STEPS = Table(
    "bench_bare_steps",
    BARE,
    Column("id", Integer, primary_key=True),
    Column("ticket_id", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("body", JSON, nullable=False),
)
RAW_EVENTS = Table(
    "bench_raw_events",
    BARE,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("site", String(128), nullable=False),
    Column("device", String(128), nullable=False),
    Column("asset", String(128), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
)


class BenchFailed(Exception):
    pass


@dataclass
class Options:
    dbs: list[str]
    pg: str
    clients: int
    tickets: int  # per client per round
    warm_tickets: int  # per client, in the uncounted warm-up round
    rounds: int
    events: int  # (b) deliveries per round
    warm_events: int
    quick: bool


@dataclass
class HttpRound:
    rate: float  # requests/s while every client was busy
    latencies: list[float]  # of the requests in that window (s)
    sent: int
    counted: int
    server_cpu: float  # server process CPU s per request, over the whole round
    client_cpu: float  # this process's CPU as a share of one core, over the round


@dataclass
class IngestRound:
    rate: float
    latencies: list[float]
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class DbResult:
    name: str
    desc: str
    http: dict[str, list[HttpRound]] = field(default_factory=lambda: {"ours": [], "bare": []})
    ingest: dict[str, list[IngestRound]] = field(default_factory=lambda: {"ours": [], "raw": []})
    pids: dict[str, int] = field(default_factory=dict)


# -- the servers, each in a process of its own ------------------------------------------------


def bare_app(db_url: str) -> Any:
    """One POST route, one INSERT, no auth: the floor under any FastAPI + SQLAlchemy route."""
    from central.storage.db import make_engine

    state: dict[str, Engine] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["engine"] = make_engine(db_url)
        try:
            yield
        finally:
            state["engine"].dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/bare/{ticket_id}/{action}")
    def step(
        ticket_id: int, action: str, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        with state["engine"].begin() as conn:
            row = conn.execute(
                insert(BARE_STEPS).values(
                    ticket_id=ticket_id, action=action, at=datetime.now(UTC), body=body
                )
            )
            pk = row.inserted_primary_key[0]
        return {"id": pk, "ticket_id": ticket_id, "action": action}

    return app


async def server_role(kind: str, db_url: str, port: int) -> None:
    """Serve until SIGTERM or until the bench closes our stdin (it died)."""
    import uvicorn

    from central.server import CentralServer
    from central.settings import Settings

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us

    def watch_stdin() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    if kind == "ours":
        server = CentralServer(
            Settings(db_url=db_url, broker_url=None, host=HOST, port=port, migrate_on_start=False)
        )
        await server.start()
        print("ready", flush=True)
        await stop.wait()
        await server.stop()
        return

    class Embedded(uvicorn.Server):  # as CentralServer's: signals are ours
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    config = uvicorn.Config(
        bare_app(db_url), host=HOST, port=port, log_level="warning", lifespan="on"
    )
    bare = Embedded(config)
    task = asyncio.create_task(bare.serve())
    while not bare.started:
        if task.done():
            task.result()
            raise RuntimeError("bare server did not start")
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await stop.wait()
    bare.should_exit = True
    await task


class Server:
    """A server process of ours or the peer's, with its base URL and CPU counters."""

    def __init__(self, kind: str, db_url: str) -> None:
        self.kind = kind
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--role",
            self.kind,
            "--db-url",
            self.db_url,
            "--port",
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the bench only; it stops us in order
        )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise BenchFailed(f"{self.kind} server did not start in 60 s") from None
        if line.strip() != b"ready":
            raise BenchFailed(f"{self.kind} server did not start; see its output above")
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc = None


# -- (a) the client loop ----------------------------------------------------------------------

Plan = list[tuple[str, dict[str, str], dict[str, Any]]]  # (path, headers, body) per request


def plans_for(
    kind: str,
    tickets: list[list[int]],
    headers: dict[str, dict[str, str]],
    engineers: list[str],
) -> list[Plan]:
    """Each client's requests: its tickets one after another, each through the ten steps."""
    plans: list[Plan] = []
    for client, ids in enumerate(tickets):
        eng = engineers[client]
        who = {"dispatcher": DISPATCHER, "engineer": eng, "supervisor": SUPERVISOR}
        plan: Plan = []
        for tid in ids:
            for path, role, body in LIFECYCLE:
                if path == "dispatch":
                    body = {"engineer": eng}
                url = f"/tickets/{tid}/{path}" if kind == "ours" else f"/bare/{tid}/{path}"
                plan.append((url, headers[who[role]], body))
        plans.append(plan)
    return plans


async def run_client(http: httpx.AsyncClient, plan: Plan) -> list[tuple[float, float]]:
    done: list[tuple[float, float]] = []
    for path, headers, body in plan:
        h = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        t0 = time.perf_counter()
        r = await http.post(path, json=body, headers=h)
        t1 = time.perf_counter()
        if r.status_code != 200:
            raise BenchFailed(f"POST {path}: HTTP {r.status_code} {r.text[:300]}")
        done.append((t1, t1 - t0))
    return done


async def http_round(
    server: Server, clients: list[httpx.AsyncClient], plans: list[Plan], *, warm: bool = False
) -> HttpRound:
    cpu0, own0, t0 = server.cpu(), time.process_time(), time.perf_counter()
    per_client = await asyncio.gather(
        *(run_client(c, p) for c, p in zip(clients, plans, strict=True))
    )
    cpu1, own1, t1 = server.cpu(), time.process_time(), time.perf_counter()
    sent = sum(len(p) for p in plans)
    # The window: from the first 5 % of answers (connections and caches warm) until the first
    # client is done (after that fewer than N are busy).
    ends = sorted(t for c in per_client for t, _ in c)
    start = ends[len(ends) // 20]
    end = min(c[-1][0] for c in per_client)
    lat = [lat for c in per_client for t, lat in c if start < t <= end]
    if not warm and (end <= start or len(lat) < 10):
        raise BenchFailed("a round too short to measure: raise --tickets")
    return HttpRound(
        rate=len(lat) / (end - start) if end > start else sent / (t1 - t0),
        latencies=lat,
        sent=sent,
        counted=len(lat),
        server_cpu=(cpu1 - cpu0) / sent,
        client_cpu=(own1 - own0) / (t1 - t0),
    )


# -- (b) edge events --------------------------------------------------------------------------


def make_events(tag: str, n: int, rng: random.Random) -> tuple[list[Any], int]:
    """``n`` deliveries: distinct events (per asset fault_opened / fault_cleared in turn, assets
    interleaved as many devices report) and ~10 % redeliveries of an event shortly after it."""
    from fieldloop.messages import Event, EventKind

    dups = round(n * DUPLICATE_SHARE)
    distinct = n - dups
    assets = max(1, distinct // EVENTS_PER_ASSET)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events: list[Any] = []
    for i in range(distinct):
        a, k = i % assets, i // assets
        opening = k % 2 == 0
        events.append(
            Event(
                site=f"bench-{tag}",
                device=f"dev-{a:04d}",
                asset=f"A-{a:04d}",
                event_time=t0 + timedelta(seconds=i),
                seq=k + 1,
                kind=EventKind.fault_opened if opening else EventKind.fault_cleared,
                rule_id="bench.chiller.discharge_temp.high",
                title="Discharge temperature high",
                location="Plant room B1",
                metric="discharge_temp",
                value=97.0 if opening else 85.0,
                threshold=95.0,
                readings={"discharge_temp": 97.0 if opening else 85.0, "suction_temp": 7.5},
            )
        )
    # A redelivery follows its event by 1-50 deliveries (a lost ack, the outbox resends).
    for _ in range(dups):
        j = rng.randrange(distinct)
        events.insert(min(len(events), j + 1 + rng.randrange(50)), events[j])
    return events, dups


def ingest_round(sessions: Any, events: list[Any], policy: Any) -> IngestRound:
    from central.ingest.events import ingest

    out = IngestRound(0.0, [])
    lat = out.latencies
    t0 = time.perf_counter()
    for ev in events:
        s = time.perf_counter()
        o = ingest(sessions, ev, datetime.now(UTC), policy)
        lat.append(time.perf_counter() - s)
        if o.result.value != "committed":
            out.outcomes[o.result.value] += 1
        elif o.created:
            out.outcomes["created"] += 1
        elif o.reopened:
            out.outcomes["reopened"] += 1
        elif o.resolved:
            out.outcomes["cleared+auto-resolved"] += 1
        elif o.cleared:
            out.outcomes["cleared"] += 1
        else:
            out.outcomes["attached"] += 1
    out.rate = len(events) / (time.perf_counter() - t0)
    return out


def raw_round(engine: Engine, events: list[Any]) -> IngestRound:
    out = IngestRound(0.0, [])
    lat = out.latencies
    stmt = insert(RAW_EVENTS)
    t0 = time.perf_counter()
    for ev in events:
        s = time.perf_counter()
        row = {
            "event_id": ev.id,
            "site": ev.site,
            "device": ev.device,
            "asset": ev.asset,
            "rule_id": ev.rule_id,
            "kind": ev.kind.value,
            "seq": ev.seq,
            "event_time": ev.event_time,
            "received_at": datetime.now(UTC),
            "payload": ev.model_dump(mode="json", by_alias=True),
        }
        with engine.begin() as conn:
            conn.execute(stmt, row)
        lat.append(time.perf_counter() - s)
    out.rate = len(events) / (time.perf_counter() - t0)
    return out


# -- one database -----------------------------------------------------------------------------


def setup_people(sessions: Any, engineers: list[str]) -> dict[str, dict[str, str]]:
    """Like tests/support.add_people: users with bearer tokens; name -> headers."""
    from central.domain.permissions import Role
    from central.services.users import create_user, issue_token

    now = datetime.now(UTC)
    people = {DISPATCHER: Role.dispatcher, SUPERVISOR: Role.supervisor}
    people.update({e: Role.engineer for e in engineers})
    headers = {}
    with sessions() as s, s.begin():
        for name, role in people.items():
            user = create_user(s, name, role, now=now)
            token = issue_token(s, user, now=now, ttl=timedelta(hours=2)).token
            headers[name] = {"Authorization": f"Bearer {token}"}
    return headers


def open_tickets(sessions: Any, n: int, tag: str) -> list[int]:
    """``n`` new tickets raised from fault events (one asset each), in one transaction."""
    from central.ingest.events import apply_event
    from fieldloop.messages import Event, EventKind

    now = datetime.now(UTC)
    ids = []
    with sessions() as s, s.begin():
        for i in range(n):
            ev = Event(
                site=f"tickets-{tag}",
                device=f"dev-{i:05d}",
                asset=f"T-{i:05d}",
                event_time=now,
                seq=1,
                kind=EventKind.fault_opened,
                rule_id="bench.chiller.discharge_temp.high",
                title="Discharge temperature high",
                location="Plant room B1",
                metric="discharge_temp",
                value=97.0,
                threshold=95.0,
            )
            o = apply_event(s, ev, now)
            assert o.created and o.ticket_id is not None
            ids.append(o.ticket_id)
    return ids


async def run_http(opts: Options, res: DbResult, db_url: str, sessions: Any, tag: str) -> list[int]:
    engineers = [f"eng.bench{c}" for c in range(opts.clients)]
    headers = setup_people(sessions, engineers)
    per_round = opts.clients * opts.tickets
    total = opts.clients * (opts.warm_tickets + opts.rounds * opts.tickets)
    ids = open_tickets(sessions, total, tag)
    # ticket ids per round, per client: warm-up first
    batches: list[list[list[int]]] = []
    pos = 0
    for count in [opts.warm_tickets] + [opts.tickets] * opts.rounds:
        batches.append([ids[pos + c * count : pos + (c + 1) * count] for c in range(opts.clients)])
        pos += opts.clients * count
    assert pos == total and per_round * opts.rounds + opts.clients * opts.warm_tickets == total

    servers = {k: Server(k, db_url) for k in ("ours", "bare")}
    async with contextlib.AsyncExitStack() as stack:
        for s in servers.values():
            stack.push_async_callback(s.stop)
            await s.start()
            assert s.proc is not None
            res.pids[s.kind] = s.proc.pid
        print(
            f"  servers: ours pid {res.pids['ours']} on {servers['ours'].url}, "
            f"bare pid {res.pids['bare']} on {servers['bare'].url}",
            flush=True,
        )
        http: dict[str, list[httpx.AsyncClient]] = {}
        for k, s in servers.items():
            http[k] = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=1)
                    )
                )
                for _ in range(opts.clients)
            ]
        for i, batch in enumerate(batches):
            # who goes first alternates, so neither always follows the other's load
            order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
            got = {}
            for k in order:
                plans = plans_for(k, batch, headers, engineers)
                got[k] = await http_round(servers[k], http[k], plans, warm=i == 0)
            if i == 0:
                o, b = got["ours"], got["bare"]
                print(
                    f"  (a) warm-up: ours {o.rate:6.0f} req/s, bare {b.rate:6.0f} req/s "
                    f"({o.sent} requests each, not counted)",
                    flush=True,
                )
                continue
            for k in order:
                res.http[k].append(got[k])
            o, b = got["ours"], got["bare"]
            print(
                f"  (a) round {i}: ours {o.rate:6.0f} req/s, bare {b.rate:6.0f} req/s, "
                f"ours/bare {o.rate / b.rate:.2f}",
                flush=True,
            )
    return ids


def check_http(sessions: Any, ids: list[int], sent_bare: int) -> None:
    """Every ticket went the whole way and its history chain verifies; the peer wrote a row per
    request."""
    from central.services.audit import verify
    from central.storage.models import Ticket

    with sessions() as s:
        states = Counter(s.execute(select(Ticket.state).where(Ticket.id.in_(ids))).scalars().all())
        lens = Counter(
            s.execute(select(Ticket.history_len).where(Ticket.id.in_(ids))).scalars().all()
        )
        rows = s.execute(select(func.count()).select_from(BARE_STEPS)).scalar_one()
        report = verify(s)
    if states != {"cancelled": len(ids)} or lens != {STEPS + 1: len(ids)}:
        raise BenchFailed(f"tickets not walked through: states {states}, history lengths {lens}")
    if rows != sent_bare:
        raise BenchFailed(f"bare peer stored {rows} rows for {sent_bare} requests")
    if not report.ok:
        raise BenchFailed(f"history chains broken: {report.broken[:3]}")


def run_ingest(opts: Options, res: DbResult, engine: Engine, sessions: Any) -> None:
    from central.ingest.events import IngestPolicy
    from central.storage.models import EdgeEvent

    policy = IngestPolicy()
    rng = random.Random(7)
    warm, _ = make_events(f"warm-{uuid.uuid4().hex[:6]}", opts.warm_events, rng)
    ingest_round(sessions, warm, policy)
    raw_round(engine, warm)
    for r in range(opts.rounds):
        tag = f"r{r}-{uuid.uuid4().hex[:6]}"
        events, dups = make_events(tag, opts.events, rng)
        order = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
        got = {}
        for k in order:
            got[k] = (
                ingest_round(sessions, events, policy) if k == "ours" else raw_round(engine, events)
            )
            res.ingest[k].append(got[k])
        with sessions() as s:
            stored = s.execute(
                select(func.count(), func.sum(EdgeEvent.duplicates)).where(
                    EdgeEvent.site == f"bench-{tag}"
                )
            ).one()
        if tuple(stored) != (len(events) - dups, dups):
            raise BenchFailed(
                f"ingest stored {tuple(stored)}, expected {(len(events) - dups, dups)}"
            )
        print(
            f"  (b) round {r + 1}: ingest {got['ours'].rate:6.0f} events/s, raw INSERT "
            f"{got['raw'].rate:6.0f} events/s, ours/raw {got['ours'].rate / got['raw'].rate:.2f}",
            flush=True,
        )


def run_db(opts: Options, name: str, tmp: Path) -> DbResult:
    """Everything on one database; the database is dropped on the way out, however it ends."""
    from central.storage.db import make_engine, migrate, session_factory

    tag = uuid.uuid4().hex[:10]
    url = None if name == "sqlite" else opts.pg
    (tmp / name).mkdir()
    with database(url, tmp / name, f"tt_{tag}") as (db_url, desc):
        res = DbResult(name, desc)
        print(f"\n== {desc}", flush=True)
        engine = make_engine(db_url)
        try:
            t0 = time.perf_counter()
            migrate(engine)
            BARE.create_all(engine)
            sessions = session_factory(engine)
            ids = asyncio.run(run_http(opts, res, db_url, sessions, tag))
            warm = opts.clients * opts.warm_tickets * STEPS
            check_http(sessions, ids, sum(r.sent for r in res.http["bare"]) + warm)
            t1 = time.perf_counter()
            run_ingest(opts, res, engine, sessions)
            took = f"{t1 - t0:.0f} s for (a), {time.perf_counter() - t1:.0f} s for (b)"
            print(f"  ({took})", flush=True)
        finally:
            engine.dispose()
    return res


def run(opts: Options) -> list[DbResult]:
    with tempfile.TemporaryDirectory(prefix="fieldloop-bench-") as tmpname:
        return [run_db(opts, name, Path(tmpname)) for name in opts.dbs]


# -- the report -------------------------------------------------------------------------------


def report(results: list[DbResult], opts: Options, wall: float, load: tuple[float, float]) -> None:
    print(
        f"\n(a) ticket transitions over HTTP: {opts.clients} clients; per server {opts.rounds} "
        f"round(s) of {opts.clients * opts.tickets * STEPS} requests\n    "
        f"({opts.clients * opts.tickets} tickets x {STEPS} steps) after a warm-up round; req/s "
        "while all clients are busy,\n    median of the rounds; n: requests counted in those "
        "windows"
    )
    head = (
        f"{'':<10} {'server':<34} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms/req':>10} {'client':>6} {'n':>6}"
    )
    print(head)
    print("-" * len(head))
    names = {"ours": "ours (lifecycle step, auth, idem.)", "bare": "bare (one INSERT, no auth)"}
    for res in results:
        rates = {}
        for k in ("ours", "bare"):
            rs = res.http[k]
            lat = [x for r in rs for x in r.latencies]
            rates[k] = statistics.median(r.rate for r in rs)
            cpu = statistics.median(r.server_cpu for r in rs) * 1000
            client = max(r.client_cpu for r in rs)
            print(
                f"{res.name:<10} {names[k]:<34} {rates[k]:7.0f} {percentile(lat, 50) * 1000:7.1f} "
                f"{percentile(lat, 99) * 1000:7.1f} {cpu:10.2f} {client:6.0%} "
                f"{sum(r.counted for r in rs):6d}"
            )
        ratio = rates["ours"] / rates["bare"]
        cpu_ratio = statistics.median(r.server_cpu for r in res.http["bare"]) / statistics.median(
            r.server_cpu for r in res.http["ours"]
        )
        met = "met" if ratio >= TARGET else "NOT met"
        print(
            f"{'':<10} ours / bare: {ratio:.2f} (target >= {TARGET:g}: {met}); by server CPU per "
            f"request: {cpu_ratio:.2f}; rounds: "
            + " ".join(
                f"{o.rate / b.rate:.2f}"
                for o, b in zip(res.http["ours"], res.http["bare"], strict=True)
            )
        )
        busy = max(r.client_cpu for k in ("ours", "bare") for r in res.http[k])
        if busy > 0.8:
            print(
                f"{'':<10} ! the clients' process used up to {busy:.0%} of a core: the peer's "
                f"rate may be\n{'':<10}   the clients' limit, not its own (the ratio is then "
                "flattered)"
            )

    print(
        f"\n(b) edge events into tickets: {opts.rounds} round(s) per path of {opts.events} "
        f"deliveries, {DUPLICATE_SHARE:.0%} of them\n    redeliveries, after a warm-up; one "
        "transaction per event; events/s over the round,\n    median of the rounds"
    )
    head = f"{'':<10} {'path':<34} {'ev/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'n':>6}"
    print(head)
    print("-" * len(head))
    names = {
        "ours": "ingest() (dedup, ticket, history)",
        "raw": "raw INSERT of the event row",
    }
    for res in results:
        rates = {}
        for k in ("ours", "raw"):
            rs = res.ingest[k]
            lat = [x for r in rs for x in r.latencies]
            rates[k] = statistics.median(r.rate for r in rs)
            print(
                f"{res.name:<10} {names[k]:<34} {rates[k]:7.0f} {percentile(lat, 50) * 1000:7.2f} "
                f"{percentile(lat, 99) * 1000:7.2f} {len(lat):6d}"
            )
        mix: Counter[str] = Counter()
        for r in res.ingest["ours"]:
            mix.update(r.outcomes)
        total = sum(mix.values())
        print(
            f"{'':<10} ours / raw: {rates['ours'] / rates['raw']:.2f}; rounds: "
            + " ".join(
                f"{o.rate / r.rate:.2f}"
                for o, r in zip(res.ingest["ours"], res.ingest["raw"], strict=True)
            )
            + f"\n{'':<10} ingest outcomes: "
            + ", ".join(f"{k} {v / total:.0%}" for k, v in mix.most_common())
        )
    cpus = os.cpu_count()
    print(
        f"""
Notes:
  * (a) ours: each request is one lifecycle step (dispatch ... request-verification, cancel)
    with a bearer token and a fresh Idempotency-Key. bare: a FastAPI app in uvicorn with one
    plain-def POST route doing one INSERT (SQLAlchemy Core, make_engine: same driver, pool and
    SQLite pragmas), sent the same headers and bodies by the same loop. Both servers run in
    processes of their own; the clients (httpx, one keep-alive connection each) in this one.
  * CPU ms/req: the server process's user+sys CPU over the round / requests (the database
    server's own CPU is not in it on PostgreSQL). Less disturbed by other load than req/s.
    client: the driving process's CPU as a share of one core (highest round); near 100 %
    the clients, not the server, would be the limit.
  * (b) in this process, one event after another: ingest() as the MQTT consumer calls it
    (inbox row, open/clear/auto-resolve/reopen, history entry), against one INSERT of the
    same row (payload serialised the same way) into a table with no constraints.
  * Run took {wall:.0f} s; load average {load[0]:.1f} before, {load[1]:.1f} after
    ({cpus} CPUs). Absolute rates on a shared machine are noisy: read the ratios."""
    )


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument(
        "--pg",
        default=DEFAULT_PG,
        help=f"PostgreSQL server: the bench creates and drops a database of its own there\n"
        f"(default {DEFAULT_PG})",
    )
    p.add_argument("--quick", action="store_true", help="a short run (~30 s for both databases)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    p.add_argument("--tickets", type=int, help="tickets per client per round (default 6; quick 3)")
    p.add_argument("--rounds", type=int, help="measured rounds per path (default 3; quick 1)")
    p.add_argument("--events", type=int, help="(b) deliveries per round (default 400; quick 150)")
    # internal: the servers run through this same file
    p.add_argument("--role", choices=["ours", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--db-url", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        return a
    a.tickets = a.tickets or (3 if a.quick else 6)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.events = a.events or (150 if a.quick else 400)
    if a.clients < 1 or a.tickets < 1 or a.rounds < 1 or a.events < 20:
        p.error("--clients, --tickets and --rounds must be at least 1, --events at least 20")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.role:
        asyncio.run(server_role(a.role, a.db_url, a.port))
        return 0
    opts = Options(
        dbs=["sqlite", "postgresql"] if a.db == "both" else [a.db],
        pg=a.pg,
        clients=a.clients,
        tickets=a.tickets,
        warm_tickets=1 if a.quick else 2,
        rounds=a.rounds,
        events=a.events,
        warm_events=40 if a.quick else 100,
        quick=a.quick,
    )
    print(
        f"FieldLoop ticket transitions bench: {', '.join(opts.dbs)}; {opts.clients} clients; "
        f"{'quick' if opts.quick else 'default'} run",
        flush=True,
    )
    # SIGTERM as Ctrl-C: servers stopped and databases dropped on the way out either way.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        results = run(opts)
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "bench interrupted; its servers were stopped and its databases dropped", file=sys.stderr
        )
        return 130
    report(results, opts, time.perf_counter() - t0, (load0, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
