"""The fields a rule may test: one registry, so a condition can only name something that exists
and the check knows each field's type. ``fieldloop rules fields`` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    text = "text"  # free text: contains_any and matches are case-insensitive
    keyword = "keyword"  # a short code or name: compared exactly
    number = "number"
    integer = "integer"
    keywords = "keywords"  # a list of keywords (tags, skills)
    boolean = "boolean"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    description: str
    values: tuple[str, ...] = ()  # the allowed values of a keyword field, when closed


_URGENCY = ("critical", "high", "medium", "low")
_SOURCES = ("iot", "api", "web", "webhook", "rules")
_SEVERITY = ("critical", "major", "minor", "warning", "info")
_KINDS = ("fault_opened", "fault_cleared", "comm_lost", "comm_restored", "maintenance_due",
          "flapping")  # fmt: skip
_BANDS = ("p1", "p2", "p3", "p4")  # lowered, as facts are compared
_CRITICALITY = ("low", "medium", "high", "critical")

FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("text", FieldType.text, "title and description together"),
        Field("title", FieldType.text, "the ticket's title"),
        Field("description", FieldType.text, "the ticket's description"),
        Field("location", FieldType.text, "where: site, building, room"),
        Field("problem_type", FieldType.keyword, "as reported (hvac, plumbing, 空调 ...)"),
        Field("urgency", FieldType.keyword, "as reported", _URGENCY),
        Field("source", FieldType.keyword, "the intake channel", _SOURCES),
        Field("site", FieldType.keyword, "the site id"),
        Field("category", FieldType.keyword, "set by classification (priority rules read it)"),
        Field("queue", FieldType.keyword, "set by classification"),
        Field("tags", FieldType.keywords, "set by classification"),
        Field("priority", FieldType.keyword, "set by priority.yaml", _BANDS),
        Field("asset.id", FieldType.keyword, "the asset, when known"),
        Field("asset.class", FieldType.keyword, "the asset's class (chiller, pump, lift ...)"),
        Field("asset.criticality", FieldType.keyword, "how much the asset matters", _CRITICALITY),
        Field("fault.code", FieldType.keyword, "the detecting rule's id (IoT tickets)"),
        Field("fault.kind", FieldType.keyword, "the edge event's kind (IoT tickets)", _KINDS),
        Field("fault.severity", FieldType.keyword, "the detecting rule's severity", _SEVERITY),
        Field("fault.metric", FieldType.keyword, "the metric that crossed (IoT tickets)"),
        Field("fault.value", FieldType.number, "the reading that crossed (IoT tickets)"),
        Field("customer.tier", FieldType.keyword, "the customer's contract tier"),
        Field("reopened", FieldType.boolean, "the ticket was reopened at least once"),
        Field("hour", FieldType.integer, "hour of the ticket's creation, site time, 0-23"),
        Field("weekday", FieldType.integer, "day of the ticket's creation, 1 Monday - 7 Sunday"),
    )
}


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
