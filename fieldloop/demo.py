"""``fieldloop demo``: the whole loop on one machine.

simulated chiller --Modbus TCP--> edge agent --MQTT--> central --> ticket --> a dispatcher offers
it to an engineer, who accepts,
travels, works, waits for parts, completes with a signature once the fault clears; the customer
confirms and rates through a private link; a supervisor closes. Each step is printed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from central.ingest.events import IngestOutcome
    from fieldloop.messages import Event

log = logging.getLogger("fieldloop.demo")

DISPATCHER = "disp.zhao"
ENGINEER = "eng.li"
NEAREST = "eng.wu"  # nearer the plant, but on another job: declines the offer
SUPERVISOR = "sup.wang"
PLANT = (31.2304, 121.4737)  # the demo site's position (Shanghai)


@dataclass(frozen=True)
class DemoOptions:
    check: bool = False
    broker_url: str | None = None
    db_url: str | None = None
    data_dir: Path = Path("data/demo")
    site_file: Path = Path("deploy/sites/demo.yaml")
    host: str = "127.0.0.1"
    port: int = 8000
    broker_port: int = 18830
    topic_root: str = "fieldloop"
    timeout: float = 60.0


class DemoFailed(Exception):
    pass


class _Progress:
    """What the demo has seen so far, to say where it stopped if it times out."""

    def __init__(self) -> None:
        self.step = "starting"
        self.opened: asyncio.Queue[int] = asyncio.Queue()
        self.cleared: dict[int, asyncio.Event] = {}

    def outcome(self, event: Event, outcome: IngestOutcome) -> None:
        tid = outcome.ticket_id
        if outcome.created and tid is not None:
            self.step = f"ticket #{tid} opened"
            print(f"==> ticket #{tid} opened for asset {event.asset}: {event.title}", flush=True)
            self.opened.put_nowait(tid)
        elif outcome.reopened and tid is not None:
            self.step = f"ticket #{tid} reopened"
            print(
                f"==> ticket #{tid} reopened (重开): the same fault came back on {event.asset} "
                "within the reopen window",
                flush=True,
            )
            self.cleared[tid] = asyncio.Event()
            self.opened.put_nowait(tid)
        elif outcome.cleared and tid is not None:
            print(f"==> ticket #{tid}: {event.metric} back to normal ({event.value:g})", flush=True)
            self.cleared.setdefault(tid, asyncio.Event()).set()
        elif outcome.result == "duplicate":
            print(f"==> event {event.id} redelivered; ticket #{tid} unchanged", flush=True)

    def cleared_event(self, tid: int) -> asyncio.Event:
        return self.cleared.setdefault(tid, asyncio.Event())


def _png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    """A real (tiny) PNG: the photo and the signature the demo engineer's app uploads."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class DemoPeople:
    """Bearer tokens of the demo's dispatcher, engineer and supervisor."""

    dispatcher: str
    engineer: str
    supervisor: str
    passwords: dict[str, str]
    nearest: str = ""


def _people(sessions: object, site: str) -> DemoPeople:
    """Creates the demo's users (or reuses them on a second run) with fresh tokens, the two
    refrigeration engineers' dispatch profiles and the plant's position."""
    import secrets
    from datetime import UTC, datetime, timedelta

    from central.domain.permissions import Role
    from central.services import engineers
    from central.services.users import create_user, find_user, issue_token

    now = datetime.now(UTC)
    tokens: dict[str, str] = {}
    passwords: dict[str, str] = {}
    with sessions() as session, session.begin():  # type: ignore[operator]
        for name, role, dept in (
            (DISPATCHER, Role.dispatcher, "facilities"),
            (ENGINEER, Role.engineer, "hvac"),
            (NEAREST, Role.engineer, "hvac"),
            (SUPERVISOR, Role.supervisor, "facilities"),
        ):
            user = find_user(session, name)
            if user is None:
                passwords[name] = secrets.token_urlsafe(12)
                user = create_user(
                    session, name, role, now=now, password=passwords[name], department=dept
                )
            tokens[name] = issue_token(session, user, now=now, ttl=timedelta(days=1)).token
        engineers.upsert_site(
            session, site, engineers.SiteIn(name="Demo plant room", region="pudong",
                                            lat=PLANT[0], lon=PLANT[1]),
        )  # fmt: skip
        for name, display, km in ((NEAREST, "Wu Fang 吴芳", 1.2), (ENGINEER, "Li Wei 李伟", 4.5)):
            engineers.upsert(
                session, name,
                engineers.EngineerIn(
                    name=display, department="hvac", regions=[site],
                    skills={"refrigeration": 4, "hvac": 4},
                    certifications={"refrigeration-licence": None},
                    home_lat=PLANT[0] + km / 111.2, home_lon=PLANT[1],
                ),
                now,
            )  # fmt: skip
    return DemoPeople(
        tokens[DISPATCHER], tokens[ENGINEER], tokens[SUPERVISOR], passwords, tokens[NEAREST]
    )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _engineer(base: str, people: DemoPeople, progress: _Progress, check: bool) -> int:
    """Plays the dispatcher's console, the field engineer's app, the customer's link and the
    supervisor over the REST API, through every field state."""
    import uuid

    disp, eng, sup = _auth(people.dispatcher), _auth(people.engineer), _auth(people.supervisor)
    nearest = _auth(people.nearest)
    site_gps = {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 8.0}

    async def post(path: str, what: str, headers: dict[str, str], **kw: object) -> dict:
        # every state change carries an Idempotency-Key, as a mobile app on a bad network would
        r = await http.post(path, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}, **kw)  # type: ignore[arg-type]
        _expect(r, what)
        return r.json()

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while True:
            tid = await progress.opened.get()
            t = f"/tickets/{tid}"
            # dispatch.yaml chose a policy and the nearest qualified engineer got the offer
            holders = await _offered(http, t, sup)
            why = (await http.get(f"{t}/dispatch", headers=disp)).json()
            print(f"==> ticket #{tid} offered automatically to {', '.join(holders)} (自动派单, "
                  f"policy {why['policy']}); why, as GET {t}/dispatch explains it:")  # fmt: skip
            for line in why["decisions"][-1]["explanation"][:3]:
                print(f"      {line}")
            if NEAREST in holders:
                await post(f"{t}/decline", "decline", nearest,
                           json={"reason": "在另一个现场 / still on another job"})  # fmt: skip
                print(f"==> {NEAREST} declined (拒单); the job goes to the next engineer")
                holders = await _offered(http, t, sup)
            if ENGINEER not in holders:
                raise DemoFailed(f"ticket #{tid} was offered to {holders}, not {ENGINEER}")
            await post(f"{t}/accept", "accept", eng, json={})
            progress.step = f"ticket #{tid} accepted"
            print(f"==> {ENGINEER} accepted (接单) via POST {t}/accept", flush=True)
            await _show_readings(http, t, eng)
            await post(f"{t}/depart", "depart", eng, json={"location": site_gps})
            await post(f"{t}/arrive", "arrive", eng, json={"location": site_gps})
            await post(f"{t}/start", "start", eng, json={})
            print("==> on the way (出发), on site (到达, GPS kept), work started (服务中)")
            photo = await http.post(
                f"{t}/attachments",
                headers=eng,
                files={"file": ("condenser.png", _png(), "image/png")},
                data={"kind": "photo", "caption": "fouled condenser tubes"},
            )
            if photo.status_code != 201:
                raise DemoFailed(f"photo upload failed: HTTP {photo.status_code} {photo.text}")
            parts = [{"part_no": "GSK-220", "description": "end-cover gasket", "quantity": 2}]
            await post(f"{t}/wait-parts", "wait for parts", eng, json={"parts": parts})
            print("==> photo uploaded; waiting for a gasket (待料) ...", flush=True)
            await post(f"{t}/resume", "resume", eng, json={"note": "gasket from stores"})
            await post(f"{t}/parts", "parts used", eng, json={"parts": parts})
            print("    waiting for the fault to clear before completing ...", flush=True)
            await progress.cleared_event(tid).wait()
            sig = await http.post(
                f"{t}/attachments",
                headers=eng,
                files={"file": ("signature.png", _png(16, 6, (0, 0, 0)), "image/png")},
                data={"kind": "signature"},
            )
            if sig.status_code != 201:
                raise DemoFailed(f"signature upload failed: HTTP {sig.status_code} {sig.text}")
            await post(
                f"{t}/complete",
                "complete",
                eng,
                json={
                    "report": "Cleaned fouled condenser tubes, replaced the end-cover gasket; "
                    "discharge temperature normal.",
                    "signature_sha256": sig.json()["sha256"],
                },
            )
            await post(f"{t}/request-verification", "request verification", eng, json={})
            progress.step = f"ticket #{tid} completed"
            print(f"==> {ENGINEER} completed ticket #{tid} (完工) with the customer's signature")
            link = await post(f"{t}/customer-link", "customer link", disp)
            follow = link["follow_url"]
            token = follow.rsplit("/", 1)[-1]
            await post(f"/track/{token}/confirm", "customer confirms", {}, json={})
            await post(
                f"/track/{token}/rating",
                "customer rates",
                {},
                json={"score": 5, "comment": "Quick and tidy."},
            )
            print(f"==> the customer confirmed (验收通过) and rated 5/5 via {base}{follow}")
            await post(f"{t}/close", "close", sup, json={"note": "Verified on the BMS."})
            progress.step = f"ticket #{tid} closed"
            r = await http.get(t, headers=sup)
            _expect(r, "read back")
            ticket = r.json()
            steps = " -> ".join(h["action"] for h in ticket["history"])
            print(
                f"==> {SUPERVISOR} closed ticket #{tid} (关闭); state {ticket['state']['key']}, "
                f"history: {steps}",
                flush=True,
            )
            if check:
                if ticket["state"]["key"] != "closed":
                    raise DemoFailed(f"ticket #{tid} ended {ticket['state']['key']}, not closed")
                return tid


async def _offered(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[str]:
    """Who holds an offer on the ticket, once dispatch has made one (several at once when the
    policy offers in parallel: the first to accept wins)."""
    for _ in range(100):
        r = await http.get(path, headers=headers)
        _expect(r, "read the ticket")
        t = r.json()
        if t["state"]["key"] == "dispatched" and t["offered_to"]:
            return list(t["offered_to"])
        await asyncio.sleep(0.1)
    raise DemoFailed(f"{path} was never offered to an engineer (state {t['state']['key']})")


def _expect(r: httpx.Response, what: str) -> None:
    if r.status_code not in (200, 201):
        raise DemoFailed(f"{what} failed: HTTP {r.status_code} {r.text}")


def preload() -> None:
    """Import what the demo runs before its event loop starts. On a loaded machine the imports
    take seconds; a stop signal during them then ends the process at once, where inside the
    loop it would wait for them to finish."""
    import importlib

    for module in (
        "central.server", "central.services.audit", "central.services.engineers",
        "central.services.users", "edge_agent.agent", "fieldloop.embedded_broker",
        "simulators.site",
    ):  # fmt: skip
        importlib.import_module(module)


async def run_demo(opts: DemoOptions) -> int:
    from central.server import CentralServer
    from central.settings import Settings
    from edge_agent.agent import EdgeAgent
    from fieldloop.brokers import parse_broker_url
    from fieldloop.detection import load_detection
    from fieldloop.embedded_broker import EmbeddedBroker
    from fieldloop.profiles import load_site
    from fieldloop.topics import Topics
    from simulators.scenarios import chiller_overheat
    from simulators.site import build_site_simulators

    site = load_site(opts.site_file)
    rules = load_detection()
    progress = _Progress()
    tmp = tempfile.TemporaryDirectory(prefix="fieldloop-check-") if opts.check else None
    # --check starts from empty state so it proves the loop, not leftovers of an earlier run.
    data_dir = Path(tmp.name) if tmp else opts.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = opts.db_url or f"sqlite:///{(data_dir / 'central.db').resolve()}"

    async with contextlib.AsyncExitStack() as stack:
        if tmp:
            stack.callback(tmp.cleanup)
        broker_url = opts.broker_url
        if broker_url is None:
            broker = EmbeddedBroker("127.0.0.1", opts.broker_port)
            await broker.start()
            stack.push_async_callback(broker.stop)
            broker_url = broker.url
        address = parse_broker_url(broker_url)

        # The drift repeats every 90 s in the interactive demo, so each closed ticket is followed
        # by a new episode and a new ticket.
        period = None if opts.check else 90.0
        sims = build_site_simulators(site, lambda dev: chiller_overheat(dev, period=period))
        for sim in sims:
            await sim.start()
            stack.push_async_callback(sim.stop)

        settings = Settings(
            db_url=db_url,
            broker_url=broker_url,
            host=opts.host,
            port=opts.port,
            topic_root=opts.topic_root,
        )
        central = CentralServer(settings, on_outcome=progress.outcome)
        await central.start()
        stack.push_async_callback(central.stop)

        # people and engineers exist before the first reading, so the first ticket finds them
        people = _people(central.app.state.sessions, site.id)

        agent = EdgeAgent(
            site,
            rules,
            address,
            data_dir / "edge",
            topics=Topics(opts.topic_root),
            resend_after=5.0,
        )
        agent_task = asyncio.create_task(agent.run(), name="edge-agent")
        stack.push_async_callback(_cancel, agent_task)

        _banner(opts, central.url, broker_url, db_url, site.id, people)
        engineer = asyncio.create_task(_engineer(central.url, people, progress, opts.check))
        stack.push_async_callback(_cancel, engineer)

        if not opts.check:
            done, _ = await asyncio.wait({engineer, agent_task}, return_when="FIRST_COMPLETED")
            for t in done:
                t.result()
            return 0
        try:
            async with asyncio.timeout(opts.timeout):
                done, _ = await asyncio.wait({engineer, agent_task}, return_when="FIRST_COMPLETED")
                tid = next(iter(done)).result()
        except TimeoutError:
            print(
                f"demo --check FAILED: no closed ticket within {opts.timeout:g} s; "
                f"last step reached: {progress.step}",
                flush=True,
            )
            return 1
        except Exception as exc:  # any failure of a part is the check's answer, said plainly
            print(f"demo --check FAILED: {type(exc).__name__}: {exc}", flush=True)
            return 1
        from central.services.audit import verify

        with central.app.state.sessions() as session:
            audit = verify(session)
        if not audit.ok:
            print(f"demo --check FAILED: the audit chain is broken: {audit.broken}", flush=True)
            return 1
        print(
            f"==> audit chain verified: {audit.entries} hash-chained entries over "
            f"{audit.tickets} ticket(s) (fieldloop audit verify --db {db_url})",
            flush=True,
        )
        print(f"demo --check OK: ticket #{tid} went from a Modbus register to closed", flush=True)
        return 0
    return 0


async def _cancel(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _show_readings(http: httpx.AsyncClient, t: str, headers: dict[str, str]) -> None:
    """What the engineer sees before setting off: the asset's readings around the fault, as the
    edge sent them to the telemetry store."""
    r = await http.get(f"{t}/telemetry", headers=headers, params={"before": 600, "after": 60})
    _expect(r, "readings around the fault")
    doc = r.json()
    metric = doc["fault"].get("metric")
    fault = next((s for s in doc["series"] if s["metric"] == metric), None)
    if fault is None or not fault["points"]:
        raise DemoFailed(f"no {metric} readings around the fault in the telemetry store: {doc}")
    first, peak = fault["points"][0], max(fault["points"], key=lambda p: p["max"])
    print(
        f"==> readings around the fault (GET {t}/telemetry): {doc['readings']} readings of "
        f"{len(doc['series'])} metrics; {metric} {first['avg']:.1f} -> peak {peak['max']:.1f}"
    )


def _banner(
    opts: DemoOptions, url: str, broker: str, db: str, site: str, people: DemoPeople
) -> None:
    signin = "".join(
        f"\n  sign in as:        {name} / {pw}  (POST /auth/token)"
        for name, pw in people.passwords.items()
    )
    print(
        f"""
FieldLoop demo — site {site}
  simulated chiller: Modbus TCP per {opts.site_file}
  broker:            {broker}
  database:          {db}
  board:             {url}/board
  API docs:          {url}/docs
  tickets (JSON):    {url}/tickets  (Authorization: Bearer <token>){signin}
  report a problem:  {url}/report
The chiller's discharge temperature will drift over 95 degC; the edge agent raises a ticket after
it holds for 5 s. {"Running to a closed ticket (--check)." if opts.check else "Ctrl-C stops."}
""",
        flush=True,
    )
