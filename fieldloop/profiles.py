"""Device profiles (one per device model) and site files (the device instances of one site).

A profile says where each resource lives (table, address, type, byte and word order) and how to
turn raw registers into engineering units (scale, offset, plausible range). A site file says which
devices exist, how to reach them and which asset each one serves.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from fieldloop.durations import parse_duration
from fieldloop.jsonpath import parse as parse_path
from fieldloop.registers import Order, RawType, register_count
from fieldloop.yamlfile import (
    FileError,
    FileProblem,
    LocatedValueError,
    load,
    position,
    repeated,
    require_unique,
)

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s/+#$]+$")]

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_profiles_dir() -> Path:
    return Path(os.environ.get("FIELDLOOP_PROFILES_DIR", REPO_ROOT / "device_profiles"))


class Table(StrEnum):
    coils = "coils"
    discrete_inputs = "discrete_inputs"
    input_registers = "input_registers"
    holding_registers = "holding_registers"

    @property
    def is_bits(self) -> bool:
        return self in (Table.coils, Table.discrete_inputs)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resource(_Strict):
    """A Modbus resource (table, address, type) or, in an MQTT profile, a field of the payload
    (``path``, a JSON path)."""

    name: Ident
    table: Table | None = None
    address: int | None = Field(None, ge=0, le=65535)
    path: str | None = Field(None, description="MQTT profiles: JSON path in the payload")
    type: RawType | None = None
    length: int | None = Field(None, ge=1, le=125, description="registers, for strings")
    byte_order: Order = Order.big
    word_order: Order = Order.big
    scale: float = 1.0
    offset: float = 0.0
    units: str | None = None
    min: float | None = None
    max: float | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.scale == 0:
            raise ValueError("scale 0 would make every reading equal to offset; use 1")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.path is not None:
            if self.table is not None or self.address is not None:
                raise ValueError("a resource has either path (MQTT) or table/address (Modbus)")
            if self.type not in (None, RawType.float64, RawType.int64, RawType.bool):
                raise ValueError("an MQTT field's type is float64, int64 or bool")
            parse_path(self.path)
            return self
        missing = [k for k in ("table", "address", "type") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"a Modbus resource needs {', '.join(missing)} (or give path for an MQTT field)"
            )
        return self._consistent_modbus()

    def _consistent_modbus(self) -> Self:
        assert self.table is not None and self.type is not None and self.address is not None
        if self.table.is_bits and self.type is not RawType.bool:
            raise ValueError(f"{self.table} hold single bits: use type bool, not {self.type}")
        if not self.table.is_bits and self.type is RawType.bool:
            raise ValueError("type bool lives in coils or discrete_inputs, not registers")
        if self.type is RawType.string and not self.length:
            raise ValueError("a string resource needs length (in registers)")
        if self.type is not RawType.string and self.length is not None:
            raise ValueError("length only applies to type string")
        if self.address + self.count - 1 > 65535:
            raise ValueError("the value runs past register 65535")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) the value occupies (Modbus resources)."""
        assert self.table is not None and self.type is not None
        return 1 if self.table.is_bits else register_count(self.type, self.length)


class DeviceProfile(_Strict):
    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["DeviceProfile"]
    name: Name
    protocol: Literal["modbus", "mqtt"] = "modbus"
    ignore_fields: list[str] = Field(
        default_factory=list,
        description="MQTT profiles: payload members that are known but not telemetry (ts, rssi)",
    )
    manufacturer: str | None = None
    model: str | None = None
    description: str | None = None
    resources: list[Resource] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> Self:
        dup = repeated([r.name for r in self.resources])
        if dup:
            raise LocatedValueError(
                f"resource name {dup[1]!r} is used twice; names must be unique",
                ("resources", dup[0], "name"),
            )
        for i, r in enumerate(self.resources):
            if (r.path is None) != (self.protocol == "modbus"):
                want = "table, address and type" if self.protocol == "modbus" else "path"
                raise LocatedValueError(
                    f"resource {r.name!r}: a {self.protocol} profile's resources give {want}",
                    ("resources", i, "name"),
                )
        for table in Table:
            spans = sorted(
                (r.address, r.address + r.count - 1, r.name, i)
                for i, r in enumerate(self.resources)
                if r.table is table
            )
            for (_a0, a1, n0, _i0), (b0, _b1, n1, i1) in itertools.pairwise(spans):
                if b0 <= a1:
                    raise LocatedValueError(
                        f"{n1} at address {b0} overlaps {n0} (which runs to {a1}) in {table}; "
                        "move one of them",
                        ("resources", i1, "address"),
                    )
        return self

    def resource(self, name: str) -> Resource:
        for r in self.resources:
            if r.name == name:
                return r
        raise KeyError(name)


class ModbusTcpEndpoint(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    timeout: float = Field(1.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=10)


class MqttEndpoint(_Strict):
    """Where an MQTT device publishes its payloads (on the site's device broker)."""

    topic: str = Field(min_length=1, max_length=512)
    qos: Literal[0, 1] = 1

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, v: str) -> str:
        if "+" in v or "#" in v:
            raise ValueError("one device, one topic: wildcards (+, #) are not allowed here")
        return v


class ReportPolicy(_Strict):
    """What telemetry leaves the gateway. ``period``: each metric at most once per ``every``
    (the value read in that poll, never a stale repeat). ``change``: when a metric moves by more
    than ``deadband``, and at least once per ``every`` as a heartbeat."""

    mode: Literal["period", "change"] = "period"
    every: float = Field(0.0, ge=0, description="seconds; 0 = every reading")
    deadband: float = Field(0.0, ge=0)

    @field_validator("every", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)  # type: ignore[arg-type]


class DeviceInstance(_Strict):
    id: Name
    asset: Name
    profile: Name
    modbus_tcp: ModbusTcpEndpoint | None = None
    mqtt: MqttEndpoint | None = None
    poll_interval: float = Field(1.0, ge=0.01, le=86400)
    report: ReportPolicy = ReportPolicy()
    write_allow: list[Ident] = Field(
        default_factory=list,
        description="resources a write may touch; default none (read function codes only)",
    )
    location: str | None = None

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _poll_duration(cls, v: object) -> float:
        return parse_duration(v)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.modbus_tcp is None) == (self.mqtt is None):
            raise ValueError("give exactly one of modbus_tcp or mqtt")
        return self


class SiteFile(_Strict):
    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    kind: Literal["Site"]
    site: Name
    name: str | None = None
    location: str | None = None
    profiles_dir: str | None = Field(
        None, description="where the profiles live, relative to this file; default device_profiles/"
    )
    device_broker: str | None = Field(
        None, description="MQTT broker of the site's MQTT devices; default: the uplink broker"
    )
    devices: list[DeviceInstance] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        require_unique([d.id for d in self.devices], "device id", "id", "devices")
        return self


class Site:
    """A loaded site: the site file plus the profile of each of its devices."""

    def __init__(self, path: Path, spec: SiteFile, profiles: dict[str, DeviceProfile]) -> None:
        self.path = path
        self.spec = spec
        self.profiles = profiles

    @property
    def id(self) -> str:
        return self.spec.site

    def profile_of(self, device: DeviceInstance) -> DeviceProfile:
        return self.profiles[device.profile]


def load_profile(path: Path) -> DeviceProfile:
    return load(path, DeviceProfile)


def load_site(path: Path, profiles_dir: Path | None = None) -> Site:
    """Load a site file and every profile it names; errors point at the device's profile key."""
    from fieldloop.yamlfile import parse_yaml, validate

    data = parse_yaml(path)
    spec = validate(path, data, SiteFile)
    if profiles_dir is None:
        profiles_dir = (
            (path.parent / spec.profiles_dir) if spec.profiles_dir else default_profiles_dir()
        )
    profiles: dict[str, DeviceProfile] = {}
    problems: list[FileProblem] = []
    for i, dev in enumerate(spec.devices):
        if dev.profile in profiles:
            continue
        file = profiles_dir / f"{dev.profile}.yaml"
        if not file.is_file():
            known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
            line, col = position(data, ["devices", i, "profile"])
            problems.append(
                FileProblem(
                    str(path),
                    line,
                    col,
                    f"profile {dev.profile!r} not found in {profiles_dir} "
                    f"(available: {', '.join(known) or 'none'})",
                )
            )
            continue
        try:
            profile = load_profile(file)
        except FileError as exc:
            problems.extend(exc.problems)
            continue
        if profile.name != dev.profile:
            problems.append(
                FileProblem(
                    str(file), 1, 1, f"name {profile.name!r} must match the file name {file.stem!r}"
                )
            )
            continue
        profiles[dev.profile] = profile
    for i, dev in enumerate(spec.devices):
        profile = profiles.get(dev.profile)
        if profile is None:
            continue
        transport = "modbus_tcp" if dev.modbus_tcp is not None else "mqtt"
        if (transport == "mqtt") != (profile.protocol == "mqtt"):
            line, col = position(data, ["devices", i, transport])
            problems.append(
                FileProblem(
                    str(path), line, col,
                    f"device {dev.id!r} uses {transport} but profile {profile.name!r} is a "
                    f"{profile.protocol} profile; use "
                    f"{'mqtt' if profile.protocol == 'mqtt' else 'modbus_tcp'} or another profile",
                )
            )  # fmt: skip
        names = {r.name for r in profile.resources}
        for j, name in enumerate(dev.write_allow):
            res = next((r for r in profile.resources if r.name == name), None)
            writable = res is not None and res.table in (Table.holding_registers, Table.coils)
            if not writable:
                line, col = position(data, ["devices", i, "write_allow", j])
                why = "is not a resource of" if name not in names else "is not writable in"
                problems.append(
                    FileProblem(
                        str(path), line, col,
                        f"write_allow: {name!r} {why} profile {profile.name!r}; only holding "
                        "registers and coils can be written",
                    )
                )  # fmt: skip
    if problems:
        raise FileError(problems)
    return Site(path, spec, profiles)


def check_files(paths: Sequence[Path]) -> list[FileProblem]:
    """Check profile or site files (told apart by ``kind``); return every problem found."""
    from fieldloop.yamlfile import parse_yaml

    problems: list[FileProblem] = []
    for path in paths:
        try:
            data = parse_yaml(path)
            kind = data.get("kind") if hasattr(data, "get") else None
            if kind == "Site":
                load_site(path)
            else:
                load_profile(path)
        except FileError as exc:
            problems.extend(exc.problems)
    return problems
