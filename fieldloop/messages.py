"""Wire messages between edge and central (schema v1).

Every message carries a schema name, a unique id (UUIDv7), the site, the device and asset, the
rule that produced it (if any), an event time from the edge clock and a per-device sequence number.
Models are strict about unknown fields so a typo on the wire is caught, not silently dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fieldloop.ids import new_id

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s/+#$]+$")]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EventKind(StrEnum):
    fault_opened = "fault_opened"
    fault_cleared = "fault_cleared"
    comm_lost = "comm_lost"
    comm_restored = "comm_restored"
    maintenance_due = "maintenance_due"
    flapping = "flapping"  # opens and clears too often: one event instead of a storm of tickets


#: Kinds that start an episode (a ticket) and the kinds that end one.
OPENING_KINDS = frozenset(
    {EventKind.fault_opened, EventKind.comm_lost, EventKind.maintenance_due, EventKind.flapping}
)
CLEARING_KINDS = frozenset({EventKind.fault_cleared, EventKind.comm_restored})

#: Rule id used for communication episodes, which no detection rule produces.
COMM_RULE_ID = "comm_lost"


class Severity(StrEnum):
    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"
    info = "info"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: MessageId = Field(default_factory=new_id)
    site: Name
    device: Name
    asset: Name
    event_time: AwareDatetime
    seq: int = Field(ge=0, description="per-device sequence number, increasing")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class Event(_Message):
    """Something the edge detected: a fault opened or cleared, communication lost or back,
    maintenance due. The edge keeps it in its outbox until central acks this id."""

    schema_: Literal["fieldloop.event/1"] = Field("fieldloop.event/1", alias="schema")
    kind: EventKind
    rule_id: Name
    severity: Severity = Severity.major
    title: str = Field(max_length=200)
    location: str | None = Field(None, max_length=255, description="where the asset is")
    metric: str | None = Field(None, max_length=128)
    value: float | None = None
    threshold: float | None = None
    readings: dict[str, float] = Field(default_factory=dict, max_length=256)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("value", "threshold")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number (NaN and infinity are not readings)")
        return v

    @field_validator("readings")
    @classmethod
    def _finite_readings(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"readings must be finite numbers; not finite: {', '.join(bad)}")
        return v

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


#: The most samples in one batch: the edge splits larger flushes (a 4 MB MQTT packet holds this).
MAX_SAMPLES = 10_000


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    metric: Name
    time: AwareDatetime
    value: float
    quality: Literal["good", "uncertain", "bad"] = "good"


class TelemetryBatch(_Message):
    """Readings of one device, batched by the edge."""

    schema_: Literal["fieldloop.telemetry/1"] = Field("fieldloop.telemetry/1", alias="schema")
    rule_id: Name | None = None
    profile: Name | None = Field(None, description="the device's profile: its metrics")
    samples: list[Sample] = Field(max_length=MAX_SAMPLES)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class ReceivedTelemetry(_Message):
    """A telemetry batch as central takes it: the header as strict as ``TelemetryBatch``, the
    samples left as decoded, so central screens them one by one and quarantines a bad reading
    (NaN, a reset clock) without refusing the good readings beside it."""

    schema_: Literal["fieldloop.telemetry/1"] = Field("fieldloop.telemetry/1", alias="schema")
    rule_id: Name | None = None
    profile: Name | None = None
    samples: list[Any] = Field(max_length=MAX_SAMPLES)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=True
    )


class SampleLike(Protocol):
    """What the telemetry encoder reads of a sample: a ``Sample``, or the edge's own readings."""

    @property
    def metric(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def value(self) -> float: ...
    @property
    def quality(self) -> str: ...


#: metric name -> its JSON string, shared by every batch the process encodes
_QUOTED_METRICS: dict[str, str] = {}


def encode_telemetry(
    *,
    id: str,
    site: str,
    device: str,
    asset: str,
    seq: int,
    samples: Iterable[SampleLike],
    profile: str | None = None,
) -> bytes:
    """The JSON of ``TelemetryBatch(...).to_json()`` written directly, without building a model
    per sample: the edge's hot path (tens of thousands of samples a second on a gateway) calls
    this with readings it decoded itself, whose values are finite and times aware. Central
    validates every batch with ``TelemetryBatch`` on receipt; a test holds the two equal."""
    dumps = json.dumps
    quoted = _QUOTED_METRICS
    if len(quoted) > 100_000:  # metric names come from profiles; this only guards a leak
        quoted.clear()
    parts: list[str] = []
    last: datetime | None = None
    stamp = ""
    for s in samples:
        if s.time is not last:  # the samples of one poll share one time object
            last = s.time
            stamp = s.time.isoformat()
        metric = quoted.get(s.metric)
        if metric is None:
            metric = quoted[s.metric] = dumps(s.metric, ensure_ascii=False)
        parts.append(
            f'{{"metric":{metric},"time":"{stamp}","value":{s.value!r},"quality":"{s.quality}"}}'
        )
    if last is None:
        raise ValueError("a telemetry batch needs at least one sample")
    head = ",".join(
        f"{dumps(k)}:{dumps(v, ensure_ascii=False)}"
        for k, v in (
            ("schema", "fieldloop.telemetry/1"),
            ("id", id),
            ("site", site),
            ("device", device),
            ("asset", asset),
            ("event_time", stamp),
            ("seq", seq),
        )
    )
    tail = f'"rule_id":null,"profile":{dumps(profile, ensure_ascii=False)}'
    return f'{{{head},{tail},"samples":[{",".join(parts)}]}}'.encode()


class AckResult(StrEnum):
    committed = "committed"  # first delivery, stored
    duplicate = "duplicate"  # seen before; nothing new stored
    rejected = "rejected"  # malformed: kept in central's dead-letter table, do not resend


class Ack(BaseModel):
    """Central -> edge: the event ``acked_id`` is durably stored (or dead-lettered) at central.
    Echoes the acked event's device, asset, rule and seq (when they could be read) for tracing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["fieldloop.ack/1"] = Field("fieldloop.ack/1", alias="schema")
    id: MessageId = Field(default_factory=new_id)
    site: Name
    acked_id: MessageId
    device: str | None = None
    asset: str | None = None
    rule_id: str | None = None
    seq: int | None = None
    event_time: AwareDatetime | None = None
    time: AwareDatetime
    result: AckResult
    ticket_id: int | None = None
    reason: str | None = Field(None, max_length=2000)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class DeviceHealth(BaseModel):
    """How one device has been answering, as the edge agent sees it."""

    model_config = ConfigDict(extra="forbid")

    comm: Literal["ok", "lost", "unknown"] = "unknown"
    last_poll: AwareDatetime | None = None
    last_ok: AwareDatetime | None = None
    polls: int = 0
    errors: int = 0
    last_error: str | None = None


class SiteStatus(BaseModel):
    """Retained on ``.../status``; the edge's last will sets ``online`` to False."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Name
    online: bool
    time: datetime | None = None
    agent_version: str | None = None
    devices: dict[str, DeviceHealth] = Field(default_factory=dict)
    outbox_messages: int | None = None
    outbox_bytes: int | None = None
    dropped_telemetry_samples: int = 0
    dead_letters: int = 0
