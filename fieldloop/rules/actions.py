"""The action vocabulary: what a rule may do, each with its schema. A rule's ``then`` is a list
of one-key mappings (``- set_category: plumbing``). Messages may use only the placeholders in
PLACEHOLDERS (``{{asset.name}}``): no expressions, no code."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fieldloop.rules.conditions import Path, Problem
from fieldloop.rules.fields import did_you_mean

PLACEHOLDERS = frozenset({"ticket.id", "ticket.title", "asset.id", "asset.name", "site",
                          "location", "fault.code", "category", "priority", "queue"})  # fmt: skip
PRIORITIES = ("P1", "P2", "P3", "P4")
ROLES = ("dispatcher", "supervisor", "service_director", "planner", "assignee")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


@dataclass(frozen=True)
class Action:
    name: str
    value: Any  # normalised per the action's schema


@dataclass(frozen=True)
class FollowUp:
    """open_ticket: a second job the rule opens beside the ticket (an inspection after a gas
    leak, the lift contractor's report after an entrapment)."""

    title: str
    category: str
    queue: str
    priority: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Skill:
    skill: str
    level: int


#: actions allowed per file kind
ACTIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    "ClassificationRules": (
        "set_category",
        "set_queue",
        "set_skills",
        "add_tags",
        "suppress",
        "notify",
        "open_ticket",
    ),
    "PriorityRules": ("add_score", "set_priority", "notify", "escalate", "open_ticket"),
    "DispatchRules": ("use_policy",),
    "SlaRules": ("use_policy",),
}
ALL_ACTIONS = tuple(sorted({a for v in ACTIONS_BY_KIND.values() for a in v}))


def template(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} takes text")
    if len(text) > 1000:
        raise ValueError(f"{where} is over 1,000 characters")
    for m in _PLACEHOLDER.finditer(text):
        name = m.group(1)
        if name not in PLACEHOLDERS:
            raise ValueError(
                f"placeholder {{{{{name}}}}} is not allowed"
                f"{did_you_mean(name, sorted(PLACEHOLDERS))}; allowed: "
                + ", ".join(sorted(PLACEHOLDERS))
            )
    if "{%" in text or "{#" in text:
        raise ValueError("only {{placeholder}} is allowed in messages, no template statements")
    return text


def render(text: str, values: Mapping[str, Any]) -> str:
    """A message with its placeholders filled in; one the ticket lacks shows as "-"."""

    def fill(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        return "-" if v is None or v == "" else str(v)

    return _PLACEHOLDER.sub(fill, text)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value.strip().casefold()):
        raise ValueError(
            f"{what} is a name of lower-case letters, digits, '.', '_' or '-' (up to 64), "
            f"not {value!r}"
        )
    return value.strip().casefold()


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ValueError(f"{what} takes a non-empty list")
    return tuple(_name(v, what) for v in value)


def _mapping(value: Any, action: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{action} takes a mapping with " + ", ".join(sorted(required)))
    keys = {str(k) for k in value}
    unknown = keys - required - optional
    if unknown:
        k = sorted(unknown)[0]
        raise ValueError(
            f"{action}: unknown key {k!r}{did_you_mean(k, sorted(required | optional))}"
        )
    missing = required - keys
    if missing:
        raise ValueError(f"{action}: missing " + ", ".join(sorted(missing)))
    return value


def _value(name: str, value: Any) -> Any:
    if name in ("set_category", "set_queue"):
        return _name(value, name)
    if name == "add_tags":
        return _names(value, name)
    if name == "set_skills":
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise ValueError("set_skills takes a list of {skill: name, level: 1-5}")
        skills = []
        for item in value:
            m = _mapping(item, "set_skills", {"skill"}, {"level"})
            level = m.get("level", 1)
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
                raise ValueError(f"set_skills: level is 1 to 5, not {level!r}")
            skills.append(Skill(_name(m["skill"], "skill"), level))
        return tuple(skills)
    if name == "suppress":
        m = _mapping(value, name, {"reason"}, set())
        return template(m["reason"], "suppress.reason")
    if name == "add_score":
        if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
            raise ValueError(f"add_score takes a whole number from -1000 to 1000, not {value!r}")
        return value
    if name == "set_priority":
        if value not in PRIORITIES:
            raise ValueError(f"set_priority takes one of {', '.join(PRIORITIES)}, not {value!r}")
        return value
    if name == "notify":
        m = _mapping(value, name, {"to", "message"}, set())
        return (_name(m["to"], "notify.to"), template(m["message"], "notify.message"))
    if name == "escalate":
        m = _mapping(value, name, {"to", "reason"}, set())
        if m["to"] not in ROLES:
            raise ValueError(
                f"escalate.to is one of {', '.join(ROLES)}{did_you_mean(str(m['to']), ROLES)}"
            )
        return (m["to"], template(m["reason"], "escalate.reason"))
    if name == "use_policy":
        return _name(value, name)
    if name == "open_ticket":
        m = _mapping(value, name, {"title", "category", "queue"}, {"priority", "description"})
        title = template(m["title"], "open_ticket.title")
        if len(title) > 200:
            raise ValueError("open_ticket.title is over 200 characters")
        priority = m.get("priority")
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"open_ticket.priority is one of {', '.join(PRIORITIES)}")
        description = m.get("description")
        return FollowUp(
            title,
            _name(m["category"], "open_ticket.category"),
            _name(m["queue"], "open_ticket.queue"),
            priority,
            None if description is None else template(description, "open_ticket.description"),
        )
    raise AssertionError(name)


def parse_actions(data: Any, kind: str, path: Path, problems: list[Problem]) -> tuple[Action, ...]:
    allowed = ACTIONS_BY_KIND[kind]
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        problems.append(Problem(path, "then: needs a non-empty list of actions"))
        return ()
    actions = []
    for i, item in enumerate(data):
        here = (*path, i)
        if not isinstance(item, Mapping) or len(item) != 1:
            problems.append(
                Problem(here, "an action is one mapping with one key, e.g. `- set_category: x`")
            )
            continue
        ((name, value),) = item.items()
        name = str(name)
        if name not in allowed:
            hint = did_you_mean(name, allowed)
            where = (
                f" (it belongs in a {', '.join(k for k, v in ACTIONS_BY_KIND.items() if name in v)}"
                " file)"
                if name in ALL_ACTIONS
                else ""
            )
            problems.append(
                Problem(
                    (*here, name),
                    f"unknown action {name!r}{hint}{where}; a {kind} rule may: "
                    + ", ".join(allowed),
                )
            )
            continue
        try:
            actions.append(Action(name, _value(name, value)))
        except ValueError as exc:
            problems.append(Problem((*here, name), str(exc)))
    return tuple(actions)
