"""`fieldloop report sla --from --to [--csv]`: the overdue root-cause report of a period, read
straight from the database (the same report as GET /reports/sla)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from central.domain.sla_report import as_csv, as_json
from central.storage.db import make_engine, session_factory


def _when(value: str, flag: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"fieldloop report sla: {flag} {value!r} is not a date or ISO time "
                         "(e.g. 2026-11-01 or 2026-11-01T00:00+08:00)") from None  # fmt: skip
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from central.api.routes.sla import report_for

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    if end <= start:
        print("fieldloop report sla: --to must be after --from", file=sys.stderr)
        return 2
    engine = make_engine(args.db)
    try:
        with session_factory(engine)() as session:
            report = report_for(session, start, end, datetime.now(UTC))
    except SQLAlchemyError as exc:
        print(f"fieldloop report sla: cannot read {args.db}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if args.csv:
        sys.stdout.write(as_csv(report))
        return 0
    data = as_json(report)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"SLA {data['from']} .. {data['to']}: {data['tickets']} ticket(s), "
          f"{data['overdue']} overdue, {data['at_risk']} at risk")  # fmt: skip
    for title, key, unit in (("stages that consumed the budget", "top_stages", "tickets"),
                             ("departments holding the time", "top_departments", "hours"),
                             ("blocking reasons", "top_blocking_reasons", "hours"),
                             ("people holding the time", "top_people", "hours")):  # fmt: skip
        rows = data[key]
        if rows:
            print(f"  {title}:")
            for r in rows:  # type: ignore[attr-defined]
                name = next(v for k, v in r.items() if k not in ("tickets", "hours"))
                print(f"    {name}: {r[unit]} {unit}")
    return 0
