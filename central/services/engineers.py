"""Engineers' dispatch profiles and the sites jobs are at: validated the same way whether they
come over the API, from a YAML file or from a CSV export of an HR system. An import is all or
nothing: one bad row names its line and field, and nothing is written."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.storage.models import Engineer, EngineerLeave, Site
from fieldloop.rules.policies import Calendar
from fieldloop.yamlfile import FileError, FileProblem, parse_yaml, require_unique, validate

NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hours(value: dict[str, Any]) -> dict[str, list[str]]:
    """Shifts as a calendar's hours: the same day names (mon-fri, 周一-周五) and ranges. A
    problem is raised as the shift's own (not the calendar's ``hours``)."""
    try:
        parsed = Calendar(id="shift", timezone="UTC", hours=value).hours
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                   for e in exc.errors())) from None  # fmt: skip
    return {d: [f"{a:%H:%M}-{b:%H:%M}" for a, b in r] for d, r in parsed.items()}


class EngineerIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    department: Name | None = Field(None, description="the queue they work in (hvac, plumbing…)")
    regions: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, description="sites or regions covered; empty: everywhere"
    )
    skills: dict[Name, Annotated[int, Field(ge=1, le=5)]] = Field(
        default_factory=dict, description="skill -> level 1-5"
    )
    certifications: dict[Annotated[str, Field(min_length=1, max_length=64)], date | None] = Field(
        default_factory=dict, description="certificate -> expiry date (null: none)"
    )
    shifts: dict[str, list[str]] = Field(
        default_factory=dict,
        description='working hours in site time, e.g. {"mon-fri": ["08:00-17:00"]}; '
        "empty: always on shift",
    )
    home_lat: float | None = Field(None, ge=-90, le=90)
    home_lon: float | None = Field(None, ge=-180, le=180)
    active: bool = True

    @field_validator("shifts")
    @classmethod
    def _shifts(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _hours(v) if v else {}


class EngineerSpec(EngineerIn):
    username: str = Field(min_length=1, max_length=128)


class EngineersFile(_Strict):
    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["Engineers"]
    engineers: list[EngineerSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        require_unique([e.username for e in self.engineers], "username", "username", "engineers")
        return self


class SiteIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    region: str | None = Field(None, max_length=64)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class LeaveIn(_Strict):
    starts_at: datetime
    ends_at: datetime
    reason: str | None = Field(None, max_length=255)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-01T08:00:00+08:00")
        return v


def upsert(session: Session, username: str, spec: EngineerIn, now: datetime) -> Engineer:
    row = session.get(Engineer, username, with_for_update=True)
    values = spec.model_dump(exclude={"username"}, mode="json")
    if row is None:
        row = Engineer(username=username, updated_at=now, **values)
        session.add(row)
    else:
        for k, v in values.items():
            setattr(row, k, v)
        row.updated_at = now
    return row


def set_location(session: Session, username: str, lat: float, lon: float, now: datetime) -> None:
    row = session.get(Engineer, username, with_for_update=True)
    if row is None:
        raise LookupError(f"{username} has no dispatch profile")
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("lat and lon must be finite")
    row.lat, row.lon, row.location_at, row.updated_at = lat, lon, now, now


def add_leave(session: Session, username: str, leave: LeaveIn) -> EngineerLeave:
    if session.get(Engineer, username) is None:
        raise LookupError(f"{username} has no dispatch profile")
    if leave.ends_at <= leave.starts_at:
        raise ValueError("ends_at must be after starts_at")
    row = EngineerLeave(engineer=username, starts_at=leave.starts_at, ends_at=leave.ends_at,
                        reason=leave.reason)  # fmt: skip
    session.add(row)
    return row


def upsert_site(session: Session, site_id: str, spec: SiteIn) -> Site:
    row = session.get(Site, site_id, with_for_update=True)
    if row is None:
        row = Site(id=site_id, **spec.model_dump())
        session.add(row)
    else:
        for k, v in spec.model_dump().items():
            setattr(row, k, v)
    return row


def all_engineers(session: Session) -> list[Engineer]:
    return list(session.execute(select(Engineer).order_by(Engineer.username)).scalars())


# --- files ------------------------------------------------------------------------------------


def parse_yaml_file(name: str, text: str) -> list[EngineerSpec]:
    """A ``kind: Engineers`` YAML file, or FileError naming file:line:col of every problem."""
    data = parse_yaml(Path(name), text)
    return validate(Path(name), data, EngineersFile).engineers


CSV_COLUMNS = ("username", "name", "department", "regions", "skills", "certifications",
               "shifts", "home_lat", "home_lon", "active")  # fmt: skip


def _pairs(cell: str, what: str) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        key, sep, value = part.partition(":") if what != "shifts" else part.partition(" ")
        if not sep:
            raise CellError(
                what,
                f"{what}: {part!r} is not "
                + ("'day-range HH:MM-HH:MM'" if what == "shifts" else "'name:value'"),
            )
        out.append((key.strip(), value.strip()))
    return out


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "username": row.get("username", ""),
        "name": row.get("name", ""),
        "department": row.get("department") or None,
        "regions": [r.strip() for r in (row.get("regions") or "").split(";") if r.strip()],
        "skills": {
            k: int(v) if v.isdigit() else v for k, v in _pairs(row.get("skills") or "", "skills")
        },
        "certifications": {
            k: (v or None) for k, v in _pairs(row.get("certifications") or "", "certifications")
        },
        "active": (row.get("active") or "true").strip().lower() in ("true", "yes", "1", "是"),
    }
    shifts: dict[str, list[str]] = {}
    for day, span in _pairs(row.get("shifts") or "", "shifts"):
        shifts.setdefault(day, []).append(span)
    out["shifts"] = shifts
    for k in ("home_lat", "home_lon"):
        cell = (row.get(k) or "").strip()
        try:
            out[k] = float(cell) if cell else None
        except ValueError:
            raise CellError(k, f"{k}: {cell!r} is not a number (decimal degrees)") from None
    return out


class CellError(ValueError):
    """One cell of a CSV row is wrong: which column, and why."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def parse_csv_file(name: str, text: str) -> list[EngineerSpec]:
    """A CSV export: the columns in CSV_COLUMNS (lists separated by ';', skills as
    ``hvac:4;electrical:2``, shifts as ``mon-fri 08:00-17:00``); FileError names line and
    column of every problem."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    problems: list[FileProblem] = []
    if "username" not in header or "name" not in header:
        problems.append(FileProblem(name, 1, 1, "the header needs username and name columns; "
                                    "columns: " + ", ".join(CSV_COLUMNS)))  # fmt: skip
    for c in unknown:
        problems.append(FileProblem(name, 1, header.index(c) + 1, f"unknown column {c!r}; "
                                    "columns: " + ", ".join(CSV_COLUMNS)))  # fmt: skip
    if problems:
        raise FileError(problems)
    specs: list[EngineerSpec] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        try:
            spec = EngineerSpec.model_validate(_csv_row(row))
        except ValidationError as exc:
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "username"
                col = header.index(field) + 1 if field in header else 1
                where = ".".join(map(str, err["loc"])) or field
                problems.append(FileProblem(name, line, col, f"{where}: {err['msg']}"))
            continue
        except CellError as exc:
            col = header.index(exc.column) + 1 if exc.column in header else 1
            problems.append(FileProblem(name, line, col, str(exc)))
            continue
        except ValueError as exc:
            problems.append(FileProblem(name, line, 1, str(exc)))
            continue
        if spec.username in seen:
            problems.append(FileProblem(name, line, 1, f"{spec.username} is listed twice "
                                        f"(also line {seen[spec.username]})"))  # fmt: skip
            continue
        seen[spec.username] = line
        specs.append(spec)
    if problems:
        raise FileError(problems)
    if not specs:
        raise FileError([FileProblem(name, 1, 1, "no engineers in the file")])
    return specs


def import_specs(session: Session, specs: Iterable[EngineerSpec], now: datetime) -> int:
    n = 0
    for spec in specs:
        upsert(session, spec.username, spec, now)
        n += 1
    return n
