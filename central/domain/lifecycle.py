"""The ticket lifecycle: one pure transition table used by the API, the rules and the scheduler.

States carry English and Chinese labels (the words maintenance organisations use on their boards);
both are accepted wherever a state or an action is named.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    new = "new"
    dispatched = "dispatched"
    accepted = "accepted"
    en_route = "en_route"
    on_site = "on_site"
    in_progress = "in_progress"
    waiting_parts = "waiting_parts"
    completed = "completed"
    pending_verification = "pending_verification"
    closed = "closed"
    cancelled = "cancelled"


class Action(StrEnum):
    dispatch = "dispatch"
    accept = "accept"
    decline = "decline"
    depart = "depart"
    arrive = "arrive"
    start = "start"
    wait_parts = "wait_parts"
    resume = "resume"
    complete = "complete"
    request_verification = "request_verification"
    reject = "reject"
    close = "close"
    cancel = "cancel"
    reopen = "reopen"


STATE_LABELS: dict[State, tuple[str, str]] = {
    State.new: ("New", "新建"),
    State.dispatched: ("Dispatched", "派单"),
    State.accepted: ("Accepted", "接单"),
    State.en_route: ("En route", "出发"),
    State.on_site: ("On site", "到达"),
    State.in_progress: ("In progress", "服务中"),
    State.waiting_parts: ("Waiting for parts", "待料"),
    State.completed: ("Completed", "完成"),
    State.pending_verification: ("Pending verification", "待验收"),
    State.closed: ("Closed", "关闭"),
    State.cancelled: ("Cancelled", "取消"),
}

ACTION_LABELS: dict[Action, tuple[str, str]] = {
    Action.dispatch: ("Dispatch", "派单"),
    Action.accept: ("Accept", "接单"),
    Action.decline: ("Decline", "拒单"),
    Action.depart: ("Depart", "出发"),
    Action.arrive: ("Arrive", "到达"),
    Action.start: ("Start work", "开始服务"),
    Action.wait_parts: ("Wait for parts", "待料"),
    Action.resume: ("Resume", "恢复服务"),
    Action.complete: ("Complete", "完工"),
    Action.request_verification: ("Request verification", "提交验收"),
    Action.reject: ("Reject fix", "验收不通过"),
    Action.close: ("Close", "关闭"),
    Action.cancel: ("Cancel", "取消"),
    Action.reopen: ("Reopen", "重开"),
}

TERMINAL = frozenset({State.closed, State.cancelled})
OPEN_STATES = frozenset(set(State) - TERMINAL)
_WORKING = (State.accepted, State.en_route, State.on_site, State.in_progress)

TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.new, Action.dispatch): State.dispatched,
    (State.dispatched, Action.accept): State.accepted,
    (State.dispatched, Action.decline): State.new,
    # An engineer may take an undispatched job directly (the slice's minimal path, and grab mode).
    (State.new, Action.accept): State.accepted,
    (State.accepted, Action.depart): State.en_route,
    (State.en_route, Action.arrive): State.on_site,
    (State.on_site, Action.start): State.in_progress,
    (State.in_progress, Action.wait_parts): State.waiting_parts,
    (State.waiting_parts, Action.resume): State.in_progress,
    # Until the full engineer path lands, completion is accepted from any working state.
    **{(s, Action.complete): State.completed for s in _WORKING},
    (State.completed, Action.request_verification): State.pending_verification,
    (State.pending_verification, Action.reject): State.in_progress,
    (State.completed, Action.close): State.closed,
    (State.pending_verification, Action.close): State.closed,
    **{(s, Action.cancel): State.cancelled for s in OPEN_STATES},
    (State.closed, Action.reopen): State.in_progress,
}


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
    t = text.strip()
    for state, (en, zh) in STATE_LABELS.items():
        if t in (state.value, zh) or t.lower() == en.lower():
            return state
    raise ValueError(
        f"unknown state {text!r}; use one of "
        + ", ".join(f"{s.value} ({zh})" for s, (_en, zh) in STATE_LABELS.items())
    )


def parse_action(text: str) -> Action:
    t = text.strip()
    for action, (en, zh) in ACTION_LABELS.items():
        if t in (action.value, zh) or t.lower() == en.lower():
            return action
    raise ValueError(f"unknown action {text!r}; use one of {', '.join(a.value for a in Action)}")
