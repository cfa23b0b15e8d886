"""central.domain.permissions: every role against every action, on own and others' tickets."""

from __future__ import annotations

import pytest

from central.domain.lifecycle import Action
from central.domain.permissions import (
    MAY_CREATE,
    PERMISSIONS,
    ROLE_LABELS,
    Caller,
    Forbidden,
    Operation,
    Role,
    Scope,
    actions_for,
    authorize,
)

FIELD = [Action.accept, Action.decline, Action.depart, Action.arrive, Action.start,
         Action.wait_parts, Action.wait_customer, Action.resume, Action.complete]  # fmt: skip


def test_every_action_and_role_is_in_the_tables() -> None:
    assert set(PERMISSIONS) == set(Action) | set(Operation)
    assert set(ROLE_LABELS) == set(Role)


def test_auto_resolve_is_the_systems_alone() -> None:
    for role in Role:
        with pytest.raises(Forbidden, match="who may: nobody"):
            authorize(Caller("x", role), Action.auto_resolve, assignee="x", reporter="x")


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


@pytest.mark.parametrize("action", [Action.cancel, Action.reopen, Action.close])
def test_only_supervisors_close_cancel_and_reopen(action: Action) -> None:
    authorize(Caller("sup.wang", Role.supervisor), action, assignee=None, reporter=None)
    for role in set(Role) - {Role.supervisor}:
        with pytest.raises(Forbidden, match="who may: supervisor"):
            authorize(Caller("x", role), action, assignee="x", reporter="x")


@pytest.mark.parametrize("action", [Action.confirm, Action.reject, Operation.rate])
def test_a_customer_confirms_rejects_and_rates_only_their_own_report(
    action: Action | Operation,
) -> None:
    cust = Caller("cust.zhao", Role.customer)
    authorize(cust, action, assignee="eng.li", reporter="cust.zhao")
    with pytest.raises(Forbidden, match="only tickets they reported"):
        authorize(cust, action, assignee="eng.li", reporter="cust.qian")
    for role in set(Role) - {Role.customer}:  # nobody confirms on the customer's behalf
        with pytest.raises(Forbidden):
            authorize(Caller("x", role), action, assignee="x", reporter="x")


def test_who_sees_a_ticket() -> None:
    view = Operation.view
    authorize(Caller("eng.li", Role.engineer), view, assignee="eng.li", reporter=None)
    with pytest.raises(Forbidden):
        authorize(Caller("eng.li", Role.engineer), view, assignee="eng.wu", reporter=None)
    authorize(Caller("c", Role.customer), view, assignee=None, reporter="c")
    with pytest.raises(Forbidden):
        authorize(Caller("c", Role.customer), view, assignee=None, reporter="d")
    for role in (Role.dispatcher, Role.supervisor, Role.planner, Role.admin):
        authorize(Caller("x", role), view, assignee=None, reporter=None)
    with pytest.raises(Forbidden):
        authorize(Caller("site-1", Role.device), view, assignee=None, reporter=None)


def test_evidence_is_the_assigned_engineers_and_staffs() -> None:
    for op in (Operation.note, Operation.attach):
        authorize(Caller("eng.li", Role.engineer), op, assignee="eng.li", reporter=None)
        authorize(Caller("d", Role.dispatcher), op, assignee=None, reporter=None)
        with pytest.raises(Forbidden):
            authorize(Caller("c", Role.customer), op, assignee=None, reporter="c")
    authorize(Caller("eng.li", Role.engineer), Operation.record_parts, assignee="eng.li",
              reporter=None)  # fmt: skip
    with pytest.raises(Forbidden):
        authorize(Caller("d", Role.dispatcher), Operation.record_parts, assignee=None,
                  reporter=None)  # fmt: skip


def test_who_reports() -> None:
    assert {Role.customer, Role.engineer, Role.dispatcher, Role.supervisor} == MAY_CREATE


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
        Action.confirm, Action.reject,
    ]  # fmt: skip
    assert actions_for(Caller("s", Role.supervisor), assignee=None, reporter=None) == [
        Action.dispatch, Action.request_verification, Action.close, Action.cancel,
        Action.reopen, Action.transfer,
    ]  # fmt: skip


def test_scopes_are_consistent_with_roles() -> None:
    for action, scopes in PERMISSIONS.items():
        for role, scope in scopes.items():
            if scope is Scope.assigned:
                assert role is Role.engineer, action
            if scope is Scope.reported:
                assert role is Role.customer, action
