"""Who may do what to a ticket: one pure table of roles and actions, used by every route.

Function-level (BFLA): each lifecycle action names the roles that may take it; only supervisors
close, cancel, reopen or override. Object-level (BOLA): an engineer acts only on their own jobs
(the ticket's assignee), a customer only on tickets they reported; the same table covers
viewing, notes, photos, parts and ratings. Nothing here reads a clock or
a database: the route passes the caller and the ticket's owner and assignee in.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from central.domain.lifecycle import Action


class Role(StrEnum):
    customer = "customer"  # reporter / requester
    engineer = "engineer"
    dispatcher = "dispatcher"
    supervisor = "supervisor"
    planner = "planner"
    admin = "admin"
    device = "device"  # an edge agent, with its site's credentials


ROLE_LABELS: dict[Role, tuple[str, str]] = {
    Role.customer: ("Customer", "报修人"),
    Role.engineer: ("Field engineer", "工程师"),
    Role.dispatcher: ("Dispatcher", "调度员"),
    Role.supervisor: ("Supervisor", "主管"),
    Role.planner: ("Maintenance planner", "计划员"),
    Role.admin: ("Administrator", "管理员"),
    Role.device: ("Edge device", "边缘设备"),
}


class Scope(StrEnum):
    """Which tickets a role may take an action on."""

    any = "any"  # every ticket
    assigned = "assigned"  # only tickets assigned to the caller (engineers: their own jobs)
    reported = "reported"  # only tickets the caller reported (customers)


class Operation(StrEnum):
    """What a caller does to a ticket besides moving it through the lifecycle."""

    view = "view"
    note = "note"
    attach = "attach"  # photos, the customer's signature
    record_parts = "record_parts"
    rate = "rate"  # CSAT, the customer's
    customer_link = "customer_link"  # issue the private follow-and-confirm link


_E, _D, _S, _C = Role.engineer, Role.dispatcher, Role.supervisor, Role.customer
_STAFF = {_D: Scope.any, _S: Scope.any}

#: (action or operation) -> (role -> scope). A role missing from an entry may not do it at all.
PERMISSIONS: dict[Action | Operation, dict[Role, Scope]] = {
    Action.dispatch: dict(_STAFF),
    # accepting an offer is the engineer's own; grab mode hands the job to the caller first
    Action.accept: {_E: Scope.assigned},
    Action.decline: {_E: Scope.assigned},
    Action.depart: {_E: Scope.assigned},
    Action.arrive: {_E: Scope.assigned},
    Action.start: {_E: Scope.assigned},
    Action.wait_parts: {_E: Scope.assigned},
    Action.wait_customer: {_E: Scope.assigned},
    Action.resume: {_E: Scope.assigned},
    Action.complete: {_E: Scope.assigned},
    Action.request_verification: {_E: Scope.assigned, **_STAFF},
    # the customer confirms or rejects the fix on their own tickets; only supervisors close,
    # cancel or reopen (a customer's confirmation is what a supervisor's close reviews)
    Action.confirm: {_C: Scope.reported},
    Action.reject: {_C: Scope.reported},
    Action.close: {_S: Scope.any},
    Action.cancel: {_S: Scope.any},
    Action.reopen: {_S: Scope.any},
    Action.transfer: dict(_STAFF),
    Action.auto_resolve: {},  # the system's alone (edge ingest), never a caller's
    Operation.view: {
        _E: Scope.assigned,
        _C: Scope.reported,
        **_STAFF,
        Role.planner: Scope.any,
        Role.admin: Scope.any,
    },
    Operation.note: {_E: Scope.assigned, **_STAFF},
    Operation.attach: {_E: Scope.assigned, **_STAFF},
    Operation.record_parts: {_E: Scope.assigned},
    Operation.rate: {_C: Scope.reported},
    Operation.customer_link: dict(_STAFF),
}

#: Who may open a ticket through the API (devices open theirs through edge events).
MAY_CREATE = frozenset({_C, _E, _D, _S})


@dataclass(frozen=True)
class Caller:
    user: str
    role: Role
    site: str | None = None  # a device's site: its events must be from there
    department: str | None = None


class Forbidden(PermissionError):
    """The caller may not take this action (on this ticket). The message says who may."""


#: what an engineer holding an open offer may do before the job is theirs: see it, take it or
#: turn it down (offered to several at once, the first to accept wins)
OFFER_ACTIONS: frozenset[Action | Operation] = frozenset(
    {Action.accept, Action.decline, Operation.view}
)


def authorize(
    caller: Caller,
    action: Action | Operation,
    *,
    assignee: str | None,
    reporter: str | None,
    offered_to: Collection[str] = (),
) -> None:
    """Raise Forbidden unless ``caller`` may take ``action`` on a ticket with this assignee,
    reporter and open offers. Admins administer users and settings, not tickets: they have no
    ticket actions."""
    scopes = PERMISSIONS[action]
    scope = scopes.get(caller.role)
    if scope is None:
        who = ", ".join(sorted(r.value for r in scopes)) or "nobody"
        raise Forbidden(f"a {caller.role.value} may not {action.value} a ticket (who may: {who})")
    offered = action in OFFER_ACTIONS and caller.user in offered_to
    if scope is Scope.assigned and assignee != caller.user and not offered:
        raise Forbidden(
            f"{caller.user} may {action.value} only their own jobs; this one is "
            + (f"assigned to {assignee}" if assignee else "not assigned to anyone")
        )
    if scope is Scope.reported and reporter != caller.user:
        raise Forbidden(f"{caller.user} may {action.value} only tickets they reported")


def actions_for(
    caller: Caller, *, assignee: str | None, reporter: str | None, offered_to: Collection[str] = ()
) -> list[Action]:
    """Every action ``caller`` may take on such a ticket (whatever its state), in table order:
    what an app shows as buttons, intersected with the lifecycle's allowed actions."""
    allowed = []
    for action in PERMISSIONS:
        if not isinstance(action, Action):
            continue
        try:
            authorize(caller, action, assignee=assignee, reporter=reporter, offered_to=offered_to)
        except Forbidden:
            continue
        allowed.append(action)
    return allowed
