"""`fieldloop rules replay --detection FILE`: what a changed detection rule file would have
raised over the readings central stored, next to what the live one would have.

The detectors and the comparison are the edge's (``edge_agent.backtest``, pure); the readings
come from central (``central.services.telemetry_source``). The edge never imports central nor
central the edge, so the two meet here, in the CLI, which imports both lazily: ``fieldloop``
itself depends on neither. This module checks the flags, loads the files, and prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fieldloop.detection import AnyRule, DetectionFile, default_detection_file, load_detection
from fieldloop.yamlfile import FileError, parse_yaml, validate

if TYPE_CHECKING:
    from edge_agent.backtest import Backtest, Difference, Tally
    from edge_agent.readings import Reading

PROG = "fieldloop rules replay"
DEFAULT_DAYS = 30.0
GIT_PATH = "rules/detection.yaml"  # where --base REF finds the detection file in the repo

#: (flag, attribute) of the flags only a detection backtest takes
DETECTION_ONLY = (("--from", "start"), ("--to", "end"), ("--days", "days"), ("--site", "sites"),
                  ("--device", "devices"), ("--asset", "assets"), ("--site-file", "site_file"),
                  ("--json", "json"))  # fmt: skip
#: (flag, attribute, why) of the decision-rule replay's flags a detection backtest refuses
DECISION_ONLY = (
    ("--events", "events", "a detection backtest replays the readings in --db"),
    ("--candidate", "candidate", "the candidate detection file is --detection FILE"),
    ("--fail-if", "fail_if", "it counts changed decisions; a backtest always exits 0 when it ran"),
)


class FlagError(ValueError):
    """A flag's value is wrong, or flags do not go together: ``flag`` says which."""

    def __init__(self, flag: str, why: str) -> None:
        super().__init__(f"{flag}: {why}")


def decision_replay_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags of a decision-rule replay (no --detection), if anything."""
    for flag, attr in DETECTION_ONLY:
        if getattr(args, attr):
            return f"{flag} is for a detection backtest: add --detection FILE, or leave it out"
    if args.base is None:
        return "--base is required: the directory or git ref of the rules to compare with"
    return None


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{_when(self.start)} .. {_when(self.end)}"


def window(args: argparse.Namespace, now: datetime) -> Window:
    """[--from, --to): --to defaults to now, --from to --days (30) before --to."""
    end = args.end or now
    start = args.start or end - timedelta(days=args.days or DEFAULT_DAYS)
    if start >= end:
        bound = "--from" if args.start else "--days"
        raise FlagError(bound, f"the window {_when(start)} .. {_when(end)} is empty; "
                        "--from must be before --to")  # fmt: skip
    return Window(start, end)


def check_flags(args: argparse.Namespace) -> None:
    if not args.db:
        raise FlagError("--db", "a detection backtest replays the readings of this database URL; "
                        "give it (e.g. postgresql://host/fieldloop)")  # fmt: skip
    for flag, attr, why in DECISION_ONLY:
        if getattr(args, attr):
            raise FlagError(flag, f"not with --detection ({why})")
    if args.show < 0:
        raise FlagError("--show", f"{args.show} is negative; give how many events to print (0 up)")
    for site in args.sites:
        if "/" in site or site.endswith((".yaml", ".yml")):
            raise FlagError("--site", f"{site!r} looks like a file; --site takes a site id to "
                            "replay, the edge's site file goes to --site-file")  # fmt: skip


def load_rules(path: Path) -> DetectionFile:
    """A detection file, or a directory's detection.yaml (as --candidate takes a directory)."""
    return load_detection(path / "detection.yaml" if path.is_dir() else path)


def rules_at_git_ref(spec: str, repo: Path) -> DetectionFile:
    """``REF`` (rules/detection.yaml as it was there) or ``REF:PATH``; problems are reported
    as REF:PATH:line:col."""
    ref, _, path = spec.partition(":")
    path = path or GIT_PATH
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"],
                          capture_output=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        git = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FlagError("--base", f"{spec!r} is not a file, a directory, or a git ref of {repo} "
                        f"with {path} in it ({git[-1] if git else 'git failed'})")  # fmt: skip
    label = Path(f"{ref}:{path}")
    return validate(label, parse_yaml(label, proc.stdout.decode("utf-8", errors="replace")),
                    DetectionFile)  # fmt: skip


def base_rules(spec: str | None, repo: Path) -> tuple[str, DetectionFile]:
    if spec is None:
        path = default_detection_file()
        return str(path), load_detection(path)
    if Path(spec).exists():
        return spec, load_rules(Path(spec))
    return (spec if ":" in spec else f"{spec}:{GIT_PATH}"), rules_at_git_ref(spec, repo)


def site_file_profiles(path: str) -> dict[tuple[str, str], str]:
    from fieldloop.profiles import load_site

    site = load_site(Path(path))
    return {(site.id, d.id): d.profile for d in site.spec.devices}


# ------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace, repo: Path) -> int:
    """Exit 0 when the backtest ran (whatever it found), 2 when it could not."""
    try:
        check_flags(args)
        span = window(args, datetime.now(UTC))
        candidate = load_rules(Path(args.detection))
        base_label, base = base_rules(args.base, repo)
        overrides = site_file_profiles(args.site_file) if args.site_file else {}
    except FileError as exc:
        print(f"{PROG}: a rule or site file is wrong:\n{exc}", file=sys.stderr)
        return 2
    except FlagError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return _replay(args, span, base_label, base, args.detection, candidate, overrides)


def _replay(
    args: argparse.Namespace,
    span: Window,
    base_label: str,
    base: DetectionFile,
    cand_label: str,
    candidate: DetectionFile,
    overrides: dict[tuple[str, str], str],
) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from central.services.telemetry_source import (
        NoSuchDatabase,
        NotCentralsDatabase,
        Scope,
        reading_engine,
        reported_profiles,
        reports_profiles,
        stored_readings,
    )
    from central.storage.db import normalize_url
    from edge_agent.backtest import backtest, untested, watched_metrics

    try:
        shown_db = make_url(normalize_url(args.db)).render_as_string(hide_password=True)
    except SQLAlchemyError:  # not a URL at all: reading_engine says so below
        shown_db = args.db
    scope = Scope(span.start, span.end, tuple(args.sites), tuple(args.devices), tuple(args.assets))
    try:
        engine = reading_engine(args.db)
    except (SQLAlchemyError, NoSuchDatabase, ImportError) as exc:
        print(f"{PROG}: cannot reach the database {shown_db}: {_short(exc)}", file=sys.stderr)
        return 2
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        engine.dispose()
        print(f"{PROG}: cannot reach the database {shown_db}: {_short(exc)}", file=sys.stderr)
        return 2
    try:
        with conn:
            if reports_profiles(conn):
                profiles = reported_profiles(conn, scope)
            else:
                profiles = {}
                print(f"{PROG}: {shown_db} is older than migration 0009 (its telemetry names no "
                      "profiles): only --site-file supplies them", file=sys.stderr)  # fmt: skip
            reported = len(profiles)
            profiles.update(overrides)
            rows = stored_readings(conn, scope, watched_metrics(base, candidate))
            report = backtest(base, candidate, _readings(rows), profiles)
            silent = untested(base, candidate, report)
    except NotCentralsDatabase as exc:
        print(f"{PROG}: {shown_db}: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"{PROG}: cannot read the readings in {shown_db}: {_short(exc)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    sources = {"reported": reported, "site_file": len(overrides)}
    if args.json:
        doc = as_json(report, span, base_label, cand_label, sources, silent)
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        for line in as_text(report, span, base_label, cand_label, args.show, silent):
            print(line)
    return 0


def _readings(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[str, Reading]]:
    from edge_agent.readings import Reading

    make = Reading._make
    for row in rows:
        yield row[0], make(row[1:])


def _short(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    return (str(orig) if orig is not None else str(exc)).strip().splitlines()[0]


# ------------------------------------------------------------------------------- output


def _when(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _rows(report: Backtest) -> list[tuple[tuple[str, str, str, str], Tally]]:
    """The tallies by rule, site and asset, the kinds in the order events happen."""
    from fieldloop.messages import EventKind

    rank = {k.value: i for i, k in enumerate(EventKind)}
    return sorted(report.tallies.items(), key=lambda kv: (*kv[0][:3], rank.get(kv[0][3], 99)))


def _ordered(diffs: list[Difference]) -> list[Difference]:
    """By site, asset and time (as they come, by device, is not by asset)."""
    return sorted(diffs, key=lambda d: (d.site, d.detection.asset, d.detection.time,
                                        d.detection.rule_id))  # fmt: skip


def as_text(
    report: Backtest,
    span: Window,
    base_label: str,
    cand_label: str,
    show: int,
    untested: Sequence[AnyRule] = (),
) -> list[str]:
    """Each event only one side raised (``show`` of them), a table per rule, asset and kind,
    the devices skipped, the changed rules the readings did not test, a summary line."""
    out: list[str] = []
    diffs = _ordered(report.differences)
    for d in diffs[:show]:
        e = d.detection
        side = "ONLY CANDIDATE" if d.side == "candidate" else "ONLY BASE     "
        out.append(f"{side}  {_when(e.time)}  {d.site}/{e.asset} ({e.device})  {e.rule_id}  "
                   f"{e.kind.value}  {e.metric} {_num(e.value)} (threshold "
                   f"{_num(e.threshold)})")  # fmt: skip
    if len(diffs) > show:
        out.append(f"... and {len(diffs) - show} more (--show N prints more, --json all)")
    if report.tallies:
        rows = [("RULE", "SITE", "ASSET", "EVENT", "BASE", "CANDIDATE", "ONLY BASE",
                 "ONLY CANDIDATE")]  # fmt: skip
        for (rule, site, asset, kind), t in _rows(report):
            rows.append((rule, site, asset, kind, str(t.base), str(t.candidate), str(t.only_base),
                         str(t.only_candidate)))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        if out:
            out.append("")
        for r in rows:
            cells = [c.ljust(w) if i < 4 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(r, widths, strict=True))]  # fmt: skip
            out.append("  ".join(cells))
    if report.skipped:
        names = sorted(f"{s}/{d}" for s, d in report.skipped)
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        out.append(f"skipped {len(names)} device(s) with no known profile "
                   f"({report.skipped_readings} reading(s)): {listed}; their edges have not "
                   "reported one: give their site's file with --site-file")  # fmt: skip
    if untested:
        shown = ", ".join(f"{r.id} (profile {r.profile}, metric {r.metric})" for r in untested)
        out.append(
            f"NOT TESTED: no readings for the candidate's new or changed rule(s) {shown}: check "
            "their profile and metric names, and --site, --device and --asset"
        )
    if not report.readings:
        out.append("no readings of the metrics the rules watch in this window (check --from, "
                   "--to, --days, --site, --device and --asset)")  # fmt: skip
    only_c, only_b = len(report.only("candidate")), len(report.only("base"))
    out.append(
        f"backtest {span}: {len(report.devices)} device(s), {report.readings} reading(s); "
        f"base raised {report.raised('base')} event(s), candidate {report.raised('candidate')}; "
        f"{only_c} only by the candidate, {only_b} only by the base; base {base_label}, "
        f"candidate {cand_label}"
    )
    return out


def as_json(
    report: Backtest,
    span: Window,
    base_label: str,
    cand_label: str,
    sources: dict[str, int],
    untested: Sequence[AnyRule] = (),
) -> dict[str, Any]:
    def event(d: Difference) -> dict[str, Any]:
        e = d.detection
        return {"site": d.site, "device": e.device, "asset": e.asset, "rule": e.rule_id,
                "kind": e.kind.value, "time": _when(e.time), "metric": e.metric,
                "value": e.value, "threshold": e.threshold, "severity": e.severity.value,
                "title": e.title}  # fmt: skip

    diffs = _ordered(report.differences)
    return {
        "from": _when(span.start),
        "to": _when(span.end),
        "base": base_label,
        "candidate": cand_label,
        "devices": len(report.devices),
        "readings": report.readings,
        "profiles": sources,
        "skipped": {
            "devices": sorted(f"{s}/{d}" for s, d in report.skipped),
            "readings": report.skipped_readings,
        },
        "raised": {"base": report.raised("base"), "candidate": report.raised("candidate")},
        "untested": [r.id for r in untested],
        "rules": [
            {
                "rule": rule,
                "site": site,
                "asset": asset,
                "kind": kind,
                "base": t.base,
                "candidate": t.candidate,
                "only_base": t.only_base,
                "only_candidate": t.only_candidate,
            }
            for (rule, site, asset, kind), t in _rows(report)
        ],
        "only_candidate": [event(d) for d in diffs if d.side == "candidate"],
        "only_base": [event(d) for d in diffs if d.side == "base"],
    }
