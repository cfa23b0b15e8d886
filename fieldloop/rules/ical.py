"""Days off from an iCalendar (RFC 5545) file, as public-holiday feeds publish them: every
VEVENT is a day off from DTSTART up to DTEND (exclusive; one day when DTEND is absent).

Only what holiday feeds use is read (all-day DATE values, or DATE-TIME whose date is taken);
anything else in an event is ignored, and a file that is not iCalendar is refused by name."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

MAX_BYTES = 1_000_000
MAX_DAYS = 366 * 20  # a calendar of two decades; more is a wrong DTEND, not a holiday
_VALUE = re.compile(r"^(\d{4})(\d{2})(\d{2})(T\d{6}Z?)?$")


class IcalError(ValueError):
    pass


def _unfold(text: str) -> list[tuple[int, str]]:
    """RFC 5545 3.1: a line starting with a space or a tab continues the one before. Each
    logical line keeps the number of the file line it starts on, for error messages."""
    lines: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = (lines[-1][0], lines[-1][1] + raw[1:])
        else:
            lines.append((n, raw))
    return lines


def _date(value: str, where: str) -> date:
    m = _VALUE.match(value.strip())
    if not m:
        raise IcalError(f"{where}: {value!r} is not an iCalendar date (YYYYMMDD)")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise IcalError(f"{where}: {value!r} is not a real date") from exc


def parse_days_off(text: str, name: str = "the file") -> frozenset[date]:
    lines = _unfold(text.removeprefix("\ufeff"))
    if not lines or lines[0][1].strip().upper() != "BEGIN:VCALENDAR":
        raise IcalError(f"{name} is not an iCalendar file (it must start with BEGIN:VCALENDAR)")
    days: set[date] = set()
    event: dict[str, tuple[str, int]] | None = None
    for n, line in lines:
        head, _, value = line.partition(":")
        prop = head.split(";", 1)[0].strip().upper()
        if prop == "BEGIN" and value.strip().upper() == "VEVENT":
            if event is not None:  # the one before would be lost: refuse rather than guess
                raise IcalError(f"{name}:{n}: BEGIN:VEVENT before the last event's END:VEVENT")
            event = {}
        elif prop == "END" and value.strip().upper() == "VEVENT":
            if event is None:
                raise IcalError(f"{name}:{n}: END:VEVENT without BEGIN:VEVENT")
            if "DTSTART" not in event:
                raise IcalError(f"{name}:{n}: an event without DTSTART")
            start = _date(event["DTSTART"][0], f"{name}:{event['DTSTART'][1]}")
            end = (
                _date(event["DTEND"][0], f"{name}:{event['DTEND'][1]}")
                if "DTEND" in event
                else start + timedelta(days=1)
            )
            if end < start:
                raise IcalError(f"{name}:{event['DTEND'][1]}: DTEND is before DTSTART")
            if end == start:
                end = start + timedelta(days=1)  # a DATE-TIME event within one day
            if (end - start).days > MAX_DAYS:
                raise IcalError(f"{name}:{event['DTSTART'][1]}: an event of over 20 years")
            days.update(start + timedelta(days=i) for i in range((end - start).days))
            event = None
        elif event is not None and prop in ("DTSTART", "DTEND"):
            event[prop] = (value, n)
    if event is not None:
        raise IcalError(f"{name}: the last VEVENT has no END:VEVENT")
    return frozenset(days)


def read_days_off(path: Path) -> frozenset[date]:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise IcalError(f"{path} is over 1 MB; a holiday calendar is far smaller")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise IcalError(f"{path} does not exist; put the .ics file next to sla.yaml") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise IcalError(f"cannot read {path}: {exc}") from exc
    return parse_days_off(text, str(path))
