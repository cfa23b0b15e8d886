"""The one command: ``fieldloop <subcommand>``. Every flag has a FIELDLOOP_* environment variable
(shown in --help); ``main(argv)`` runs in-process in the tests. Subcommands import the packages they
drive lazily, so ``fieldloop`` itself depends on none of them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from fieldloop import __version__, logs
from fieldloop.net import PortInUseError
from fieldloop.stopping import SERVICES, STOP, Stopped, until_stopped
from fieldloop.yamlfile import FileError

REPO = Path(__file__).resolve().parent.parent


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(f"FIELDLOOP_{name}", default)


def _flag(
    p: argparse.ArgumentParser, flag: str, env: str, default: str | None, help: str, **kw: object
) -> None:
    """A flag whose default comes from FIELDLOOP_<env>; argparse runs ``type`` on string
    defaults too, so a bad environment value is refused like a bad flag."""
    shown = (
        f" [env FIELDLOOP_{env}; default: {default}]"
        if default is not None
        else (f" [env FIELDLOOP_{env}]")
    )
    p.add_argument(flag, default=_env(env, default), help=help + shown, **kw)  # type: ignore[arg-type]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldloop",
        description="FieldLoop: from a sensor reading to a verified, closed maintenance job.",
    )
    parser.add_argument("--version", action="version", version=f"fieldloop {__version__}")
    _flag(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    _flag(parser, "--log-format", "LOG_FORMAT", "text", "text, or json: one object per line",
          choices=["text", "json"])  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run simulator -> edge agent -> broker -> central -> tickets on this machine",
        description="Starts an embedded broker (unless --broker), SQLite (unless --db), a "
        "simulated chiller, the edge agent and central, and plays an engineer through the ticket.",
    )
    demo.add_argument(
        "--check",
        action="store_true",
        default=_env("CHECK", "") not in ("", "0", "false"),
        help="run to a closed ticket and exit 0 (non-zero with the reason) [env FIELDLOOP_CHECK]",
    )
    _flag(demo, "--broker", "BROKER_URL", None, "use this MQTT broker instead of the embedded one")
    _flag(demo, "--db", "DB_URL", None, "use this database URL instead of SQLite in --data-dir")
    _flag(demo, "--data-dir", "DATA_DIR", "data/demo", "where SQLite files and the outbox live")
    _flag(demo, "--site", "SITE", str(REPO / "deploy/sites/demo.yaml"), "site file to simulate")
    _flag(demo, "--host", "HOST", "127.0.0.1", "address central listens on")
    _flag(demo, "--port", "PORT", "8000", "central's HTTP port", type=_port)
    _flag(
        demo, "--broker-port", "EMBEDDED_BROKER_PORT", "18830", "embedded broker port", type=_port
    )
    _flag(demo, "--topic-root", "TOPIC_ROOT", "fieldloop", "first segment of every MQTT topic")
    _flag(
        demo, "--timeout", "CHECK_TIMEOUT", "60", "--check gives up after seconds", type=_positive
    )

    central = sub.add_parser("central", help="run the central work-order service")
    _flag(central, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")
    _flag(central, "--broker", "BROKER_URL", "mqtt://127.0.0.1:1883", "MQTT broker URL")
    _flag(central, "--host", "HOST", "127.0.0.1", "address to listen on")
    _flag(central, "--port", "PORT", "8000", "HTTP port", type=_port)
    _flag(central, "--topic-root", "TOPIC_ROOT", "fieldloop", "first segment of every MQTT topic")

    edge = sub.add_parser(
        "edge",
        help="run the edge agent for one site (or `edge status`)",
        description="Runs the edge agent. `fieldloop edge status --data-dir DIR` prints the "
        "running (or last) agent's per-device health and outbox depth instead.",
    )
    edge.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    _flag(edge, "--site", "SITE", None, "site file (devices and how to reach them)")
    _flag(edge, "--rules", "DETECTION_RULES", str(REPO / "rules/detection.yaml"), "detection rules")
    _flag(edge, "--broker", "BROKER_URL", "mqtt://127.0.0.1:1883", "MQTT broker URL")
    _flag(edge, "--data-dir", "DATA_DIR", "data/edge", "where the outbox lives")
    _flag(edge, "--topic-root", "TOPIC_ROOT", "fieldloop", "first segment of every MQTT topic")
    _flag(
        edge, "--reconnect-max", "RECONNECT_MAX", "30",
        "longest wait, seconds, between attempts to reach the broker (the wait doubles from 0.5)",
        type=_positive,
    )  # fmt: skip
    _flag(
        edge, "--status-interval", "STATUS_INTERVAL", "5",
        "seconds between refreshes of status.json and the retained status message",
        type=_positive,
    )  # fmt: skip

    sim = sub.add_parser("simulate", help="serve a site's devices from their profiles")
    _flag(sim, "--site", "SITE", None, "site file whose devices to simulate")
    _flag(
        sim, "--scenario", "SCENARIO", "normal",
        "a shipped scenario's name (see scenarios/) or a scenario file (.yaml)",
    )  # fmt: skip
    _flag(sim, "--truth", "TRUTH", None, "write the injected faults here (JSON Lines)")
    _flag(
        sim, "--broker", "DEVICE_BROKER", None,
        "broker the MQTT devices publish to (default: the site's device_broker, else "
        "mqtt://127.0.0.1:1883)",
    )  # fmt: skip
    _flag(sim, "--seed", "SEED", "0", "noise seed", type=int)
    _flag(sim, "--speed", "SPEED", "1", "scenario seconds per wall second", type=_positive)

    audit = sub.add_parser("audit", help="the tamper-evident ticket history")
    asub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    averify = asub.add_parser(
        "verify", help="check every ticket's hash chain; name the first broken link of each"
    )
    _flag(averify, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")

    users = sub.add_parser("users", help="people and edge sites that sign in to central")
    usub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    uadd = usub.add_parser(
        "add",
        help="create a user (the first admin, engineers, a device per site)",
        description="Creates a user. The password is read from stdin with --password-stdin, "
        "else asked for on a terminal; --no-password makes a token-only user (devices). "
        "--token prints a bearer token for it (shown once).",
    )
    uadd.add_argument("username")
    uadd.add_argument(
        "--role",
        required=True,
        choices=["customer", "engineer", "dispatcher", "supervisor", "planner", "admin", "device"],
    )
    uadd.add_argument("--display-name")
    uadd.add_argument("--department")
    uadd.add_argument("--site", help="a device's site (its credentials are confined to it)")
    uadd.add_argument("--contact")
    pw = uadd.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.add_argument("--no-password", action="store_true", help="token-only (devices)")
    uadd.add_argument("--token", action="store_true", help="also print a bearer token")
    uadd.add_argument("--ttl-days", type=_positive, default=90.0, help="token lifetime")
    utok = usub.add_parser("token", help="print a new bearer token for a user (shown once)")
    utok.add_argument("username")
    utok.add_argument("--ttl-days", type=_positive, default=90.0, help="token lifetime")
    utok.add_argument("--label", help="what the token is for (e.g. the edge host)")
    usub.add_parser("list", help="list users and their roles")
    for p in (uadd, utok, *usub.choices.values()):
        if not any(a.dest == "db" for a in p._actions):
            _flag(p, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")

    report = sub.add_parser("report", help="reports read from the database")
    rpsub = report.add_subparsers(dest="action", required=True, metavar="REPORT")
    rsla = rpsub.add_parser(
        "sla",
        help="overdue root cause: stages, departments, people and blocking reasons",
        description="For tickets created in [--from, --to): each breached or at-risk ticket's "
        "business time by stage, department and person, its pauses and the stage that consumed "
        "the budget, and the period's top stages, departments and blocking reasons.",
    )
    rsla.add_argument("--from", dest="start", required=True, help="e.g. 2026-11-01")
    rsla.add_argument("--to", dest="end", required=True, help="e.g. 2026-12-01 (exclusive)")
    rfmt = rsla.add_mutually_exclusive_group()
    rfmt.add_argument("--csv", action="store_true", help="one row per overdue ticket")
    rfmt.add_argument("--json", action="store_true", help="the API's JSON")
    _flag(rsla, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")

    eng = sub.add_parser("engineers", help="engineers' dispatch profiles (skills, shifts ...)")
    esub = eng.add_subparsers(dest="action", required=True, metavar="ACTION")
    eimport = esub.add_parser(
        "import",
        help="import profiles from YAML (kind: Engineers) or CSV, all or nothing",
        description="Creates or replaces each engineer's dispatch profile. A .csv file has the "
        "columns username,name,department,regions,skills,certifications,shifts,home_lat,"
        "home_lon,active (lists ';'-separated, skills as hvac:4;electrical:2, shifts as "
        "'mon-fri 08:00-17:00'); anything else is read as YAML.",
    )
    eimport.add_argument("file", type=Path)
    elist = esub.add_parser("list", help="list engineers with their skills and open jobs")
    for p in (eimport, elist):
        _flag(p, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")

    profiles = sub.add_parser("profiles", help="device profiles and site files")
    psub = profiles.add_subparsers(dest="action", required=True, metavar="ACTION")
    pcheck = psub.add_parser("check", help="check profile and site files; errors as file:line:col")
    pcheck.add_argument("files", nargs="+", type=Path)

    rules = sub.add_parser(
        "rules", help="planner rule files: check, test, list fields, explain, replay"
    )
    rsub = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    rules_dir = _env("RULES_DIR", str(REPO / "rules"))
    rcheck = rsub.add_parser(
        "check",
        help="check rule files: strict YAML, the schema, shadowed rules, priority bands",
        description="Prints each problem as file:line:col, then a verdict per file; exits 1 "
        "on any problem.",
    )
    rtest = rsub.add_parser(
        "test",
        help="run the rule files' tests on every engine",
        description="Prints PASS or FAIL per test and engine; exits 1 on any failure.",
    )
    for p in (rcheck, rtest):
        p.add_argument(
            "paths",
            nargs="*",
            type=Path,
            default=[Path(rules_dir)],
            metavar="PATH",
            help="rule files, or directories to take every *.yaml from "
            f"[env FIELDLOOP_RULES_DIR; default: {rules_dir}]",
        )
    rsub.add_parser("fields", help="list the fields conditions may test: type, values, meaning")
    rexplain = rsub.add_parser(
        "explain", help="which rules decided a ticket's category, queue and priority, and why"
    )
    rexplain.add_argument("ticket", type=int, help="the ticket number")
    _flag(rexplain, "--db", "DB_URL", "sqlite:///data/fieldloop.db", "database URL")
    rexplain.add_argument("--rules", default=rules_dir, help="where the rule files are now")
    rreplay = rsub.add_parser(
        "replay",
        help="what a changed rule set would decide (or detect) differently, over recorded "
        "tickets, events or readings",
        description="Decision rules: runs every recorded ticket (--db) or edge event (--events) "
        "through the base and the candidate decision rules on their own recorded time and prints "
        "each changed outcome with the deciding rules and a summary. Detection rules "
        "(--detection): runs the edge's detectors over the readings stored in --db, once with "
        "the base and once with the candidate detection file, and prints the events only one of "
        "them raises, a table per rule and asset, and a summary. Writes nothing.",
    )
    rreplay.add_argument(
        "--base",
        default=None,
        help="decision rules: a directory, or a git ref (e.g. HEAD, main) of this repo "
        "(required); with --detection: a file, a directory's detection.yaml, or a git ref "
        "(REF or REF:PATH; default: the live detection file)",
    )
    rreplay.add_argument("--candidate", default=None, help=f"decision rules; default: {rules_dir}")
    rreplay.add_argument(
        "--db", default=None, help="replay the tickets (or readings) in this database"
    )
    rreplay.add_argument("--events", default=None, help="replay these edge events (JSON Lines)")
    rreplay.add_argument("--fail-if", default=None, help="e.g. 'changed > 5%%' or 'changed >= 10'")
    rreplay.add_argument("--show", type=int, default=50, help="changed outcomes (events) to print")
    _flag(rreplay, "--timezone", "TIMEZONE", "UTC", "the sites' time zone: the hour rules see",
          type=_zone)  # fmt: skip
    det = rreplay.add_argument_group("detection backtest (with --detection)")
    det.add_argument(
        "--detection",
        default=None,
        metavar="FILE",
        help="the candidate detection rules (a file, or a directory's detection.yaml)",
    )
    when = det.add_mutually_exclusive_group()
    when.add_argument("--from", dest="start", type=_instant, metavar="ISO",
                      help="first reading time, e.g. 2026-11-01 or 2026-11-01T08:00+08:00 (UTC "
                      "if no zone); default: --days before --to")  # fmt: skip
    when.add_argument("--days", type=_positive, default=None,
                      help="how far back from --to (default 30)")  # fmt: skip
    det.add_argument("--to", dest="end", type=_instant, metavar="ISO",
                     help="end of the window (exclusive); default: now")  # fmt: skip
    for name, what in (("site", "site id"), ("device", "device id"), ("asset", "asset id")):
        det.add_argument(f"--{name}", dest=f"{name}s", action="append", default=[], metavar="ID",
                         help=f"only this {what} (repeat for more)")  # fmt: skip
    det.add_argument("--site-file", default=None, metavar="FILE",
                     help="an edge site file: its devices' profiles supply or override those the "
                     "edges reported")  # fmt: skip
    det.add_argument("--json", action="store_true", help="the report as one JSON document")
    return parser


def _instant(value: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date or ISO time (e.g. 2026-11-01 or 2026-11-01T08:00+08:00)"
        ) from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _zone(value: str) -> str:
    from fieldloop.rules.policies import check_zone

    try:
        return check_zone(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _need(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise SystemExit(f"fieldloop: {flag} is required (or set FIELDLOOP_{env})")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    from fieldloop.demo import DemoOptions, preload, run_demo

    preload()

    opts = DemoOptions(
        check=args.check,
        broker_url=args.broker,
        db_url=args.db,
        data_dir=Path(args.data_dir),
        site_file=Path(args.site),
        host=args.host,
        port=args.port,
        broker_port=args.broker_port,
        topic_root=args.topic_root,
        timeout=args.timeout,
    )
    return asyncio.run(until_stopped(run_demo(opts)))


def cmd_central(args: argparse.Namespace) -> int:
    from central.server import CentralServer
    from central.settings import Settings

    settings = Settings(
        db_url=args.db,
        broker_url=args.broker or None,
        host=args.host,
        port=args.port,
        topic_root=args.topic_root,
    )
    server = CentralServer(settings)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        # a stop signal: uvicorn's graceful shutdown (requests finished, workers stopped)
        with STOP.graceful(lambda: loop.call_soon_threadsafe(server.request_stop)):
            await server.serve(stop_signals=not STOP.installed)

    asyncio.run(serve())
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    if args.action == "status":
        from edge_agent.status import print_status

        return print_status(Path(args.data_dir))
    from edge_agent.agent import EdgeAgent
    from fieldloop.brokers import parse_broker_url
    from fieldloop.detection import load_detection
    from fieldloop.profiles import load_site
    from fieldloop.topics import Topics

    site = load_site(Path(_need(args.site, "--site", "SITE")))
    rules = load_detection(Path(args.rules))
    broker = parse_broker_url(args.broker)

    async def run() -> None:
        # built inside the loop: the Modbus clients bind to the running loop
        agent = EdgeAgent(
            site, rules, broker, Path(args.data_dir), topics=Topics(args.topic_root),
            reconnect_max=args.reconnect_max, status_interval=args.status_interval,
        )  # fmt: skip
        await agent.run()

    # SIGTERM (systemd stop) and Ctrl-C: the agent flushes and saves before exiting, status 0
    with contextlib.suppress(Stopped):
        asyncio.run(until_stopped(run()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from fieldloop.brokers import parse_broker_url
    from fieldloop.profiles import load_site
    from simulators.site import SiteSimulation

    site = load_site(Path(_need(args.site, "--site", "SITE")))
    truth = Path(args.truth) if args.truth else None
    broker = parse_broker_url(args.broker) if args.broker else None
    sim = SiteSimulation(
        site, args.scenario, seed=args.seed, speed=args.speed, truth=truth, broker=broker
    )

    async def serve() -> None:
        async with sim:
            for s in sim.modbus:
                print(f"serving {len(s.devices)} device(s) on {s.host}:{s.port}", flush=True)
            if sim.mqtt is not None:
                for d in sim.mqtt.devices:
                    print(f"publishing {d.id} on {d.topic} every {d.interval:g} s", flush=True)
            if truth is not None:
                print(f"ground truth of the injected faults: {truth}", flush=True)
            await asyncio.Event().wait()

    asyncio.run(until_stopped(serve()))
    return 0


def _report(paths: Sequence[Path], check: Callable[[Path], list[object]]) -> int:
    failed = 0
    for path in paths:
        problems = check(path)
        if problems:
            failed += 1
            print(f"Checking {path}  FAILED:")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"Checking {path}  SUCCESS")
    print(f"{len(paths) - failed} of {len(paths)} file(s) OK")
    return 1 if failed else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from central.services.audit import verify
    from central.storage.db import make_engine, session_factory

    engine = make_engine(args.db)
    try:
        with session_factory(engine)() as session:
            report = verify(session)
    except SQLAlchemyError as exc:
        print(f"fieldloop audit: cannot read the tickets at {args.db}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    for broken in report.broken:
        print(f"BROKEN {broken}")
    verdict = "OK" if report.ok else f"FAILED: {len(report.broken)} ticket(s) with a broken chain"
    print(f"audit verify: {report.tickets} ticket(s), {report.entries} entries: {verdict}")
    return 0 if report.ok else 1


def cmd_profiles(args: argparse.Namespace) -> int:
    from fieldloop.profiles import check_files

    return _report(args.files, lambda p: list(check_files([p])))


def cmd_rules(args: argparse.Namespace) -> int:
    if args.action == "fields":
        return _rules_fields()
    if args.action == "explain":
        from central.rules_cli import explain

        return explain(args)
    if args.action == "replay":
        from fieldloop.backtest_cli import decision_replay_problem, run

        if args.detection is not None:
            return run(args, REPO)
        if problem := decision_replay_problem(args):
            print(f"fieldloop rules replay: {problem}", file=sys.stderr)
            return 2
        from central.rules_cli import replay_cmd

        args.candidate = args.candidate or _env("RULES_DIR", str(REPO / "rules"))
        return replay_cmd(args, REPO)
    from fieldloop.rules.check import rule_files

    files, empty = rule_files(args.paths)
    for d in empty:
        print(f"fieldloop rules {args.action}: no *.yaml files in {d}", file=sys.stderr)
    if args.action == "test":
        return _rules_test(files) or (1 if empty else 0)
    return _rules_check(files) or (1 if empty else 0)


def _rules_check(files: list[Path]) -> int:
    """promtool's shape: each problem as file:line:col, a verdict per file, a summary."""
    from fieldloop.rules.check import check_file

    failed = 0
    for path in files:
        problems = check_file(path)
        for p in problems:
            print(p)
        if problems:
            failed += 1
            print(f"Checking {path}  FAILED: {len(problems)} problem(s)")
        else:
            print(f"Checking {path}  SUCCESS")
    print(f"{len(files) - failed} of {len(files)} file(s) OK")
    return 1 if failed else 0


def _rules_test(files: list[Path]) -> int:
    from fieldloop.rules.check import load_checked
    from fieldloop.rules.testing import default_engines, run_tests

    engines = default_engines()
    try:  # central's runtime, where it is installed (an edge gateway has no central)
        from central.rules.worker import DurableEngine

        engines.append(DurableEngine())
    except ImportError:
        print("fieldloop rules test: durable-rules is not installed; reference engine only")
    counts = {e.name: [0, 0] for e in engines}  # engine -> [passed, failed]
    broken = 0
    for path in files:
        loaded = load_checked(path)
        if loaded.ruleset is None:
            if loaded.problems:
                broken += 1
                for p in loaded.problems:
                    print(p)
                print(f"Testing {path}  FAILED: the file does not load; fix it first")
            else:
                print(f"Testing {path}  no tests ({loaded.kind} files have none)")
            continue
        spec = loaded.ruleset.spec
        if spec is None or not spec.tests:
            print(f"Testing {path}  no tests")
            continue
        for engine in engines:
            for r in run_tests(loaded.ruleset, loaded.data, engine):
                counts[engine.name][0 if r.passed else 1] += 1
                if r.problem is None:
                    print(f"PASS [{r.engine}] {path}:{r.line}:{r.col}: test {r.name!r}")
                else:
                    print(f"FAIL [{r.engine}] {r.problem}")
    for engine in engines:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    for name, (ok, bad) in counts.items():
        print(f"{name}: {ok + bad} test(s), {ok} passed, {bad} failed")
    if broken:
        print(f"{broken} file(s) could not be loaded")
    return 1 if broken or any(bad for _, bad in counts.values()) else 0


def _rules_fields() -> int:
    from fieldloop.rules.fields import FIELDS

    # the allowed values last: fault.kind's would push every description off the screen
    rows = [("FIELD", "TYPE", "DESCRIPTION", "VALUES")] + [
        (f.name, f.type.value, f.description, ", ".join(f.values)) for f in FIELDS.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[3]]).rstrip())
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from central.users_cli import run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from central.report_cli import run

    return run(args)


def cmd_engineers(args: argparse.Namespace) -> int:
    from central.engineers_cli import run

    return run(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "users": cmd_users,
    "engineers": cmd_engineers,
    "report": cmd_report,
    "demo": cmd_demo,
    "central": cmd_central,
    "edge": cmd_edge,
    "simulate": cmd_simulate,
    "profiles": cmd_profiles,
    "audit": cmd_audit,
    "rules": cmd_rules,
}


def _settings_problems(exc: ValidationError) -> str:
    """One line per wrong setting, without the value (a URL's password, a secret)."""
    lines = []
    for e in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in e["loc"])
        name = f"FIELDLOOP_{field.upper()}" if exc.title == "Settings" else field
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {msg}" if field else msg)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logs.setup(args.log_level, args.log_format)
    except KeyboardInterrupt:
        words = list(sys.argv[1:] if argv is None else argv)
        return _stopped(words[0] if words else "")
    try:
        return COMMANDS[args.command](args)
    except FileError as exc:
        print(f"fieldloop {args.command}: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # settings: each variable named, its value never echoed
        print(f"fieldloop {args.command}: {_settings_problems(exc)}", file=sys.stderr)
        return 2
    except (PortInUseError, ValueError) as exc:  # bad settings: say what, not a traceback
        print(f"fieldloop {args.command}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped):
        return _stopped(args.command)


def _stopped(command: str) -> int:
    print(f"fieldloop {command}: stopped", file=sys.stderr)
    if command in SERVICES and STOP.requested:
        return 0  # a service asked to stop has stopped: a clean exit for systemd
    return STOP.exit_code  # 130 after Ctrl-C, 143 after SIGTERM


if __name__ == "__main__":  # python -m fieldloop.cli: as python -m fieldloop, signals taken later
    from fieldloop.__main__ import main as launch

    sys.exit(launch())
