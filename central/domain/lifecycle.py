"""The ticket lifecycle: one pure transition table used by the API, the rules and the scheduler.

States carry English and Chinese labels (the words maintenance organisations use on their boards);
both are accepted wherever a state or an action is named.
"""

from __future__ import annotations

from enum import StrEnum

from central.domain.labels import by_label


class State(StrEnum):
    new = "new"
    dispatched = "dispatched"
    accepted = "accepted"
    en_route = "en_route"
    on_site = "on_site"
    in_progress = "in_progress"
    waiting_parts = "waiting_parts"
    waiting_customer = "waiting_customer"
    completed = "completed"
    pending_verification = "pending_verification"
    verified = "verified"
    closed = "closed"
    cancelled = "cancelled"
    reopened = "reopened"


class Action(StrEnum):
    dispatch = "dispatch"
    accept = "accept"
    decline = "decline"
    depart = "depart"
    arrive = "arrive"
    start = "start"
    wait_parts = "wait_parts"
    wait_customer = "wait_customer"
    resume = "resume"
    complete = "complete"
    request_verification = "request_verification"
    confirm = "confirm"
    reject = "reject"
    close = "close"
    cancel = "cancel"
    reopen = "reopen"
    transfer = "transfer"
    auto_resolve = "auto_resolve"


STATE_LABELS: dict[State, tuple[str, str]] = {
    State.new: ("New", "新建"),
    State.dispatched: ("Dispatched", "派单"),
    State.accepted: ("Accepted", "接单"),
    State.en_route: ("En route", "出发"),
    State.on_site: ("On site", "到达"),
    State.in_progress: ("In progress", "服务中"),
    State.waiting_parts: ("Waiting for parts", "待料"),
    State.waiting_customer: ("Waiting for the customer", "待客户"),
    State.completed: ("Completed", "完成"),
    State.pending_verification: ("Pending verification", "待验收"),
    State.verified: ("Verified", "已验收"),
    State.closed: ("Closed", "关闭"),
    State.cancelled: ("Cancelled", "取消"),
    State.reopened: ("Reopened", "重开"),
}

ACTION_LABELS: dict[Action, tuple[str, str]] = {
    Action.dispatch: ("Dispatch", "派单"),
    Action.accept: ("Accept", "接单"),
    Action.decline: ("Decline", "拒单"),
    Action.depart: ("Depart", "出发"),
    Action.arrive: ("Arrive", "到达"),
    Action.start: ("Start work", "开始服务"),
    Action.wait_parts: ("Wait for parts", "待料"),
    Action.wait_customer: ("Wait for the customer", "待客户"),
    Action.resume: ("Resume", "恢复服务"),
    Action.complete: ("Complete", "完工"),
    Action.request_verification: ("Request verification", "提交验收"),
    Action.confirm: ("Confirm fix", "验收通过"),
    Action.reject: ("Reject fix", "验收不通过"),
    Action.close: ("Close", "关闭"),
    Action.cancel: ("Cancel", "取消"),
    Action.reopen: ("Reopen", "重开"),
    Action.transfer: ("Transfer", "转派"),
    Action.auto_resolve: ("Recovered before dispatch", "派单前自动恢复"),
}

TERMINAL = frozenset({State.closed, State.cancelled})
OPEN_STATES = frozenset(set(State) - TERMINAL)
#: States in which the job is still to be done: a transfer sends it back to dispatch from these.
BEFORE_COMPLETION = frozenset(
    {
        State.new,
        State.dispatched,
        State.accepted,
        State.en_route,
        State.on_site,
        State.in_progress,
        State.waiting_parts,
        State.waiting_customer,
        State.reopened,
    }
)
#: Actions that need a reason from whoever takes them (the record must say why).
NEEDS_REASON = frozenset(
    {
        Action.decline,
        Action.reject,
        Action.cancel,
        Action.reopen,
        Action.transfer,
        Action.wait_customer,  # what the customer is to do, for the SLA's pause record
    }
)

TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.new, Action.dispatch): State.dispatched,
    (State.reopened, Action.dispatch): State.dispatched,
    # a supervisor moves a job still on offer to someone else (an override, with a reason)
    (State.dispatched, Action.dispatch): State.dispatched,
    (State.dispatched, Action.accept): State.accepted,
    (State.dispatched, Action.decline): State.new,
    # grab mode (抢单): an engineer claims an undispatched job directly
    (State.new, Action.accept): State.accepted,
    (State.reopened, Action.accept): State.accepted,
    (State.accepted, Action.depart): State.en_route,
    (State.en_route, Action.arrive): State.on_site,
    (State.on_site, Action.start): State.in_progress,
    (State.in_progress, Action.wait_parts): State.waiting_parts,
    (State.waiting_parts, Action.resume): State.in_progress,
    # the customer must let the engineer in, decide, or be present: the SLA clock may pause
    (State.on_site, Action.wait_customer): State.waiting_customer,
    (State.in_progress, Action.wait_customer): State.waiting_customer,
    (State.waiting_customer, Action.resume): State.in_progress,
    # the engineer of a rejected fix goes straight back to work when still on site
    (State.reopened, Action.resume): State.in_progress,
    (State.in_progress, Action.complete): State.completed,
    (State.completed, Action.request_verification): State.pending_verification,
    (State.pending_verification, Action.confirm): State.verified,
    (State.pending_verification, Action.reject): State.reopened,
    (State.verified, Action.close): State.closed,
    # a supervisor may close without the customer's word (unreachable customer); the reason is
    # required and recorded
    (State.completed, Action.close): State.closed,
    (State.pending_verification, Action.close): State.closed,
    # a fault that cleared before anyone was sent needs no visit (the edge saw it recover)
    (State.new, Action.auto_resolve): State.closed,
    (State.reopened, Action.auto_resolve): State.closed,  # reopened by a recurrence, not visited
    **{(s, Action.transfer): State.new for s in BEFORE_COMPLETION},
    **{(s, Action.cancel): State.cancelled for s in OPEN_STATES},
    (State.closed, Action.reopen): State.reopened,
}


#: What the caller must send with an action (field names as the API spells them).
_REQUIRED: dict[Action, frozenset[str]] = {
    Action.dispatch: frozenset({"engineer"}),
    Action.transfer: frozenset({"department", "reason"}),
    Action.wait_parts: frozenset({"parts"}),
    Action.complete: frozenset({"report"}),
    **{a: frozenset({"reason"}) for a in NEEDS_REASON - {Action.transfer}},
}


def required_inputs(state: State, action: Action) -> frozenset[str]:
    """The inputs ``action`` needs in ``state``. Closing without the customer's confirmation
    (from completed or pending verification) is an override and must say why."""
    needed = _REQUIRED.get(action, frozenset())
    if action is Action.close and state is not State.verified:
        needed = needed | {"reason"}
    return needed


class InvalidTransition(ValueError):
    """The action is not allowed in the ticket's current state."""

    def __init__(self, state: State, action: Action) -> None:
        self.state = state
        self.action = action
        allowed = ", ".join(a.value for a in allowed_actions(state)) or "none"
        super().__init__(
            f"cannot {action.value} a ticket that is {state.value} ({STATE_LABELS[state][1]}); "
            f"allowed now: {allowed}"
        )


def next_state(state: State, action: Action) -> State:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidTransition(state, action) from None


def allowed_actions(state: State) -> list[Action]:
    return [a for (s, a) in TRANSITIONS if s is state]


def parse_state(text: str) -> State:
    """A state by key, English or Chinese label ("in_progress", "In progress", "服务中")."""
    state = by_label(text, STATE_LABELS)
    if state is None:
        raise ValueError(
            f"unknown state {text!r}; use one of "
            + ", ".join(f"{s.value} ({zh})" for s, (_en, zh) in STATE_LABELS.items())
        )
    return state


def parse_action(text: str) -> Action:
    action = by_label(text, ACTION_LABELS)
    if action is None:
        raise ValueError(
            f"unknown action {text!r}; use one of {', '.join(a.value for a in Action)}"
        )
    return action
