"""central.domain.permissions: every role against every action, on own and others' tickets."""

from __future__ import annotations

import pytest

from central.domain.lifecycle import Action
from central.domain.permissions import (
    PERMISSIONS,
    ROLE_LABELS,
    Caller,
    Forbidden,
    Role,
    Scope,
    actions_for,
    authorize,
)

FIELD = [Action.accept, Action.decline, Action.depart, Action.arrive, Action.start,
         Action.wait_parts, Action.resume, Action.complete]  # fmt: skip


def test_every_action_and_role_is_in_the_tables() -> None:
    assert set(PERMISSIONS) == set(Action)
    assert set(ROLE_LABELS) == set(Role)


@pytest.mark.parametrize("action", FIELD)
def test_field_steps_are_the_assigned_engineers_alone(action: Action) -> None:
    eng = Caller("eng.li", Role.engineer)
    authorize(eng, action, assignee="eng.li", reporter="cust.zhao")
    with pytest.raises(Forbidden, match=r"only their own jobs; this one is assigned to eng\.wu"):
        authorize(eng, action, assignee="eng.wu", reporter=None)
    with pytest.raises(Forbidden, match="not assigned to anyone"):
        authorize(eng, action, assignee=None, reporter=None)
    for role in set(Role) - {Role.engineer}:
        with pytest.raises(Forbidden, match=f"a {role.value} may not {action.value}"):
            authorize(Caller("x", role), action, assignee="x", reporter="x")


@pytest.mark.parametrize("action", [Action.cancel, Action.reopen])
def test_only_supervisors_cancel_and_reopen(action: Action) -> None:
    authorize(Caller("sup.wang", Role.supervisor), action, assignee=None, reporter=None)
    for role in set(Role) - {Role.supervisor}:
        with pytest.raises(Forbidden, match="who may: supervisor"):
            authorize(Caller("x", role), action, assignee="x", reporter="x")


@pytest.mark.parametrize("action", [Action.close, Action.reject])
def test_a_customer_confirms_or_rejects_only_their_own_report(action: Action) -> None:
    cust = Caller("cust.zhao", Role.customer)
    authorize(cust, action, assignee="eng.li", reporter="cust.zhao")
    with pytest.raises(Forbidden, match="only tickets they reported"):
        authorize(cust, action, assignee="eng.li", reporter="cust.qian")
    authorize(Caller("sup.wang", Role.supervisor), action, assignee=None, reporter=None)
    with pytest.raises(Forbidden):
        authorize(Caller("eng.li", Role.engineer), action, assignee="eng.li", reporter=None)


def test_dispatch_is_for_dispatchers_and_supervisors() -> None:
    for role in (Role.dispatcher, Role.supervisor):
        authorize(Caller("d", role), Action.dispatch, assignee=None, reporter=None)
    for role in (Role.engineer, Role.customer, Role.device, Role.planner, Role.admin):
        with pytest.raises(Forbidden):
            authorize(Caller("d", role), Action.dispatch, assignee=None, reporter=None)


def test_admins_and_devices_take_no_ticket_action() -> None:
    for role in (Role.admin, Role.device, Role.planner):
        assert actions_for(Caller("a", role), assignee="a", reporter="a") == []


def test_actions_for_is_what_an_app_shows() -> None:
    assert actions_for(Caller("eng.li", Role.engineer), assignee="eng.li", reporter=None) == [
        *FIELD, Action.request_verification,
    ]  # fmt: skip
    assert actions_for(Caller("eng.li", Role.engineer), assignee="eng.wu", reporter=None) == []
    assert actions_for(Caller("c", Role.customer), assignee=None, reporter="c") == [
        Action.reject, Action.close,
    ]  # fmt: skip


def test_scopes_are_consistent_with_roles() -> None:
    for action, scopes in PERMISSIONS.items():
        for role, scope in scopes.items():
            if scope is Scope.assigned:
                assert role is Role.engineer, action
            if scope is Scope.reported:
                assert role is Role.customer, action
