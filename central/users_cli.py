"""`fieldloop users add|token|list`: bootstrap the first admin and the edge sites' credentials
straight in the database (before anyone can sign in to the API)."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from central.domain.permissions import Role
from central.services.users import (
    MAX_TOKEN_TTL,
    UserError,
    create_user,
    find_user,
    issue_token,
)
from central.storage.db import make_engine, migrate, session_factory
from central.storage.models import User


def _password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("give --password-stdin (and pipe the password) or --no-password")
    first = getpass.getpass(f"password for {args.username}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    engine = make_engine(args.db)
    now = datetime.now(UTC)
    try:
        migrate(engine)  # a fresh database can be bootstrapped before central first starts
        ttl_days = getattr(args, "ttl_days", 1.0)
        if not 0 < ttl_days <= MAX_TOKEN_TTL.days:  # before timedelta(): inf, 1e10 overflow it
            raise UserError(
                f"--ttl-days {ttl_days:g}: token lifetime must be between 1 s and "
                f"{MAX_TOKEN_TTL.days} days"
            )
        with session_factory(engine)() as session, session.begin():
            if args.action == "list":
                for u in session.execute(select(User).order_by(User.username)).scalars():
                    where = f" site={u.site}" if u.site else ""
                    dept = f" dept={u.department}" if u.department else ""
                    state = "" if u.active else " (deactivated)"
                    print(f"{u.username}\t{u.role}{dept}{where}{state}")
                return 0
            if args.action == "add":
                user = create_user(
                    session,
                    args.username,
                    Role(args.role),
                    now=now,
                    password=_password(args),
                    display_name=args.display_name,
                    department=args.department,
                    site=args.site,
                    contact=args.contact,
                )
                print(f"added {user.username} ({user.role})", file=sys.stderr)
                if not args.token:
                    return 0
                label = None
            else:
                found = find_user(session, args.username)
                if found is None:
                    raise UserError(f"user {args.username!r} does not exist")
                user, label = found, args.label
            issued = issue_token(
                session, user, now=now, ttl=timedelta(days=args.ttl_days), label=label
            )
            print(issued.token)
            print(f"expires {issued.expires_at.isoformat(timespec='seconds')}", file=sys.stderr)
            return 0
    except UserError as exc:
        print(f"fieldloop users {args.action}: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"fieldloop users: cannot use the database at {args.db}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
