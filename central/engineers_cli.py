"""`fieldloop engineers import FILE` and `fieldloop engineers list`: load engineers' dispatch
profiles from a YAML file (``kind: Engineers``) or a CSV export straight into the database, all
or nothing, every problem named at file:line:col."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from central.services import dispatching, engineers
from central.storage.db import make_engine, migrate, session_factory
from fieldloop.yamlfile import FileError


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    specs: list[engineers.EngineerSpec] = []
    if args.action == "import":
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"fieldloop engineers import: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        try:
            specs = (
                engineers.parse_csv_file(str(path), text)
                if path.suffix.lower() == ".csv"
                else engineers.parse_yaml_file(str(path), text)
            )
        except FileError as exc:
            for p in exc.problems:
                print(p, file=sys.stderr)
            print(f"{path}: nothing imported ({len(exc.problems)} problem(s))", file=sys.stderr)
            return 1
    engine = make_engine(args.db)
    try:
        migrate(engine)
        with session_factory(engine)() as session, session.begin():
            if args.action == "import":
                n = engineers.import_specs(session, specs, now)
                print(f"imported {n} engineer(s) from {args.file}")
                return 0
            loads = {p.id: p.open_jobs for p in dispatching.profiles(session, now)}
            for e in engineers.all_engineers(session):
                skills = ",".join(f"{k}:{v}" for k, v in sorted((e.skills or {}).items()))
                state = "" if e.active else " (inactive)"
                print(f"{e.username}\t{e.name}\tdept={e.department or '-'}\tskills={skills or '-'}"
                      f"\topen_jobs={loads.get(e.username, 0)}{state}")  # fmt: skip
            return 0
    except SQLAlchemyError as exc:
        print(f"fieldloop engineers: database error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
