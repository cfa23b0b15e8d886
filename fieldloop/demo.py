"""``fieldloop demo``: the whole loop on one machine.

simulated chiller --Modbus TCP--> edge agent --MQTT--> central --> ticket --> an engineer accepts,
the fault clears, the engineer completes, a supervisor closes. Each step is printed as it happens.
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

ENGINEER = "eng.li"
SUPERVISOR = "sup.wang"


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
        elif outcome.cleared and tid is not None:
            print(f"==> ticket #{tid}: {event.metric} back to normal ({event.value:g})", flush=True)
            self.cleared.setdefault(tid, asyncio.Event()).set()
        elif outcome.result == "duplicate":
            print(f"==> event {event.id} redelivered; ticket #{tid} unchanged", flush=True)

    def cleared_event(self, tid: int) -> asyncio.Event:
        return self.cleared.setdefault(tid, asyncio.Event())


async def _engineer(base: str, progress: _Progress, check: bool) -> int:
    """Plays the field engineer's app and the supervisor over the REST API."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while True:
            tid = await progress.opened.get()
            await asyncio.sleep(1.0)
            r = await http.post(f"/tickets/{tid}/accept", json={"actor": ENGINEER})
            _expect(r, "accept")
            progress.step = f"ticket #{tid} accepted"
            print(f"==> {ENGINEER} accepted ticket #{tid} (接单) via POST /tickets/{tid}/accept")
            print("    waiting for the fault to clear before completing ...", flush=True)
            await progress.cleared_event(tid).wait()
            r = await http.post(
                f"/tickets/{tid}/complete",
                json={
                    "actor": ENGINEER,
                    "report": "Cleaned fouled condenser tubes; discharge temperature normal.",
                },
            )
            _expect(r, "complete")
            progress.step = f"ticket #{tid} completed"
            print(f"==> {ENGINEER} completed ticket #{tid} (完工)", flush=True)
            r = await http.post(
                f"/tickets/{tid}/close", json={"actor": SUPERVISOR, "note": "Verified on the BMS."}
            )
            _expect(r, "close")
            progress.step = f"ticket #{tid} closed"
            r = await http.get(f"/tickets/{tid}")
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


def _expect(r: httpx.Response, what: str) -> None:
    if r.status_code != 200:
        raise DemoFailed(f"{what} failed: HTTP {r.status_code} {r.text}")


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

        _banner(opts, central.url, broker_url, db_url, site.id)
        engineer = asyncio.create_task(_engineer(central.url, progress, opts.check))
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
        print(f"demo --check OK: ticket #{tid} went from a Modbus register to closed", flush=True)
        return 0
    return 0


async def _cancel(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _banner(opts: DemoOptions, url: str, broker: str, db: str, site: str) -> None:
    print(
        f"""
FieldLoop demo — site {site}
  simulated chiller: Modbus TCP per {opts.site_file}
  broker:            {broker}
  database:          {db}
  board:             {url}/board
  API docs:          {url}/docs
  tickets (JSON):    {url}/tickets
The chiller's discharge temperature will drift over 95 degC; the edge agent raises a ticket after
it holds for 5 s. {"Running to a closed ticket (--check)." if opts.check else "Ctrl-C stops."}
""",
        flush=True,
    )
