"""central.domain.lifecycle: the ticket state machine and its bilingual labels."""

from __future__ import annotations

import itertools

import pytest

from central.domain.lifecycle import (
    ACTION_LABELS,
    OPEN_STATES,
    STATE_LABELS,
    TERMINAL,
    TRANSITIONS,
    Action,
    InvalidTransition,
    State,
    allowed_actions,
    next_state,
    parse_action,
    parse_state,
    required_inputs,
)

ALL_PAIRS = list(itertools.product(State, Action))
VALID = [(s, a) for s, a in ALL_PAIRS if (s, a) in TRANSITIONS]
INVALID = [(s, a) for s, a in ALL_PAIRS if (s, a) not in TRANSITIONS]

# The table as the maintenance process describes it, written out independently of the code.
_BEFORE_COMPLETION = [State.new, State.dispatched, State.accepted, State.en_route, State.on_site,
                      State.in_progress, State.waiting_parts, State.waiting_customer,
                     State.reopened]  # fmt: skip
EXPECTED_TRANSITIONS = {
    (State.new, Action.dispatch): State.dispatched,
    (State.reopened, Action.dispatch): State.dispatched,
    (State.new, Action.accept): State.accepted,
    (State.reopened, Action.accept): State.accepted,
    (State.dispatched, Action.dispatch): State.dispatched,  # a supervisor's override
    (State.dispatched, Action.accept): State.accepted,
    (State.dispatched, Action.decline): State.new,
    (State.accepted, Action.depart): State.en_route,
    (State.en_route, Action.arrive): State.on_site,
    (State.on_site, Action.start): State.in_progress,
    (State.in_progress, Action.wait_parts): State.waiting_parts,
    (State.waiting_parts, Action.resume): State.in_progress,
    (State.on_site, Action.wait_customer): State.waiting_customer,
    (State.in_progress, Action.wait_customer): State.waiting_customer,
    (State.waiting_customer, Action.resume): State.in_progress,
    (State.reopened, Action.resume): State.in_progress,
    (State.in_progress, Action.complete): State.completed,
    (State.completed, Action.request_verification): State.pending_verification,
    (State.pending_verification, Action.confirm): State.verified,
    (State.pending_verification, Action.reject): State.reopened,
    (State.verified, Action.close): State.closed,
    (State.completed, Action.close): State.closed,
    (State.pending_verification, Action.close): State.closed,
    (State.new, Action.auto_resolve): State.closed,
    (State.reopened, Action.auto_resolve): State.closed,
    (State.closed, Action.reopen): State.reopened,
    **{(s, Action.transfer): State.new for s in _BEFORE_COMPLETION},
    **{
        (s, Action.cancel): State.cancelled
        for s in State
        if s not in (State.closed, State.cancelled)
    },
}


def test_transition_table_is_the_documented_one():
    assert dict(TRANSITIONS) == EXPECTED_TRANSITIONS


@pytest.mark.parametrize(("state", "action"), VALID, ids=[f"{s}-{a}" for s, a in VALID])
def test_every_listed_pair_gives_its_next_state(state, action):
    assert next_state(state, action) is TRANSITIONS[(state, action)]
    assert next_state(state, action) is EXPECTED_TRANSITIONS[(state, action)]
    assert action in allowed_actions(state)


@pytest.mark.parametrize(("state", "action"), INVALID, ids=[f"{s}-{a}" for s, a in INVALID])
def test_every_unlisted_pair_is_an_invalid_transition(state, action):
    with pytest.raises(InvalidTransition) as exc:
        next_state(state, action)
    err = exc.value
    assert err.state is state
    assert err.action is action
    msg = str(err)
    assert f"cannot {action.value} a ticket that is {state.value}" in msg
    assert STATE_LABELS[state][1] in msg
    allowed = [a.value for a in Action if (state, a) in EXPECTED_TRANSITIONS]
    tail = msg.split("allowed now: ", 1)[1]
    if allowed:
        assert sorted(tail.split(", ")) == sorted(allowed)
    else:
        assert tail == "none"
    assert action not in allowed_actions(state)


def test_invalid_transition_is_a_value_error():
    assert issubclass(InvalidTransition, ValueError)


def test_table_covers_every_pair_exactly_once():
    assert len(VALID) + len(INVALID) == len(State) * len(Action)
    assert len(VALID) == len(EXPECTED_TRANSITIONS)


def test_allowed_actions_examples():
    assert set(allowed_actions(State.new)) == {
        Action.dispatch, Action.accept, Action.transfer, Action.auto_resolve, Action.cancel,
    }  # fmt: skip
    assert set(allowed_actions(State.waiting_parts)) == {
        Action.resume, Action.transfer, Action.cancel,
    }  # fmt: skip
    assert set(allowed_actions(State.completed)) == {
        Action.request_verification,
        Action.close,
        Action.cancel,
    }


def test_terminal_states():
    assert {State.closed, State.cancelled} == TERMINAL
    assert set(State) - TERMINAL == OPEN_STATES
    assert allowed_actions(State.closed) == [Action.reopen]
    assert allowed_actions(State.cancelled) == []
    with pytest.raises(InvalidTransition, match="allowed now: none"):
        next_state(State.cancelled, Action.reopen)
    with pytest.raises(InvalidTransition, match="allowed now: reopen"):
        next_state(State.closed, Action.cancel)


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_every_open_state_can_be_cancelled(state):
    assert next_state(state, Action.cancel) is State.cancelled


def test_every_state_is_reachable_from_new():
    seen = {State.new}
    frontier = [State.new]
    while frontier:
        s = frontier.pop()
        for a in allowed_actions(s):
            n = next_state(s, a)
            if n not in seen:
                seen.add(n)
                frontier.append(n)
    assert seen == set(State)


def test_completion_is_only_from_work_in_progress():
    for state in State:
        if state is not State.in_progress:
            with pytest.raises(InvalidTransition):
                next_state(state, Action.complete)


def test_full_engineer_path_with_parts_rejection_and_verification():
    path = [
        (Action.dispatch, State.dispatched),
        (Action.decline, State.new),
        (Action.dispatch, State.dispatched),
        (Action.accept, State.accepted),
        (Action.depart, State.en_route),
        (Action.arrive, State.on_site),
        (Action.start, State.in_progress),
        (Action.wait_parts, State.waiting_parts),
        (Action.resume, State.in_progress),
        (Action.complete, State.completed),
        (Action.request_verification, State.pending_verification),
        (Action.reject, State.reopened),
        (Action.resume, State.in_progress),
        (Action.complete, State.completed),
        (Action.request_verification, State.pending_verification),
        (Action.confirm, State.verified),
        (Action.close, State.closed),
        (Action.reopen, State.reopened),
        (Action.dispatch, State.dispatched),
    ]
    s = State.new
    for action, expected in path:
        s = next_state(s, action)
        assert s is expected, action


@pytest.mark.parametrize("state", _BEFORE_COMPLETION)
def test_a_transfer_sends_unfinished_work_back_to_dispatch(state):
    assert next_state(state, Action.transfer) is State.new


@pytest.mark.parametrize(
    "state", [State.completed, State.pending_verification, State.verified, State.closed]
)
def test_finished_work_is_not_transferred(state):
    with pytest.raises(InvalidTransition):
        next_state(state, Action.transfer)


def test_required_inputs():
    assert required_inputs(State.new, Action.dispatch) == {"engineer"}
    assert required_inputs(State.new, Action.transfer) == {"department", "reason"}
    assert required_inputs(State.in_progress, Action.wait_parts) == {"parts"}
    assert required_inputs(State.in_progress, Action.complete) == {"report"}
    for action in (Action.decline, Action.reject, Action.cancel, Action.reopen):
        assert required_inputs(State.new, action) == {"reason"}
    # closing over the customer's head is an override that must say why
    assert required_inputs(State.verified, Action.close) == frozenset()
    assert required_inputs(State.completed, Action.close) == {"reason"}
    assert required_inputs(State.pending_verification, Action.close) == {"reason"}
    assert required_inputs(State.on_site, Action.start) == frozenset()


# ---------------------------------------------------------------- labels


def test_every_state_has_english_and_chinese_labels():
    assert set(STATE_LABELS) == set(State)
    for state, (en, zh) in STATE_LABELS.items():
        assert en, state
        assert en.isascii(), state
        assert zh, state
        assert all("\u4e00" <= ch <= "\u9fff" for ch in zh), state


def test_every_action_has_english_and_chinese_labels():
    assert set(ACTION_LABELS) == set(Action)
    for action, (en, zh) in ACTION_LABELS.items():
        assert en, action
        assert en.isascii(), action
        assert zh, action
        assert all("\u4e00" <= ch <= "\u9fff" for ch in zh), action


def test_labels_are_unambiguous():
    for labels in (STATE_LABELS, ACTION_LABELS):
        en = [e.lower() for e, _ in labels.values()]
        zh = [z for _, z in labels.values()]
        assert len(set(en)) == len(en)
        assert len(set(zh)) == len(zh)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("in_progress", State.in_progress),
        ("In progress", State.in_progress),
        ("IN PROGRESS", State.in_progress),
        ("in progress", State.in_progress),
        ("服务中", State.in_progress),
        ("待料", State.waiting_parts),
        ("Waiting for parts", State.waiting_parts),
        ("waiting_parts", State.waiting_parts),
        ("关闭", State.closed),
        ("closed", State.closed),
        ("新建", State.new),
        ("待验收", State.pending_verification),
        ("pending verification", State.pending_verification),
        ("  到达  ", State.on_site),
        ("\ten route\n", State.en_route),
        ("取消", State.cancelled),
    ],
)
def test_parse_state(text, state):
    assert parse_state(text) is state


@pytest.mark.parametrize("state", list(State))
def test_parse_state_accepts_every_key_and_label(state):
    en, zh = STATE_LABELS[state]
    assert parse_state(state.value) is state
    assert parse_state(en) is state
    assert parse_state(en.upper()) is state
    assert parse_state(en.lower()) is state
    assert parse_state(zh) is state


@pytest.mark.parametrize("text", ["", "   ", "open", "in-progress", "服务", "完工", "done", "new!"])
def test_parse_state_rejects_unknown_text(text):
    with pytest.raises(ValueError, match="unknown state") as exc:
        parse_state(text)
    msg = str(exc.value)
    assert "in_progress (服务中)" in msg
    assert "closed (关闭)" in msg


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("start", Action.start),
        ("Start work", Action.start),
        ("START WORK", Action.start),
        ("开始服务", Action.start),
        ("完工", Action.complete),
        ("complete", Action.complete),
        ("待料", Action.wait_parts),
        ("wait for parts", Action.wait_parts),
        ("验收不通过", Action.reject),
        ("Reject fix", Action.reject),
        ("重开", Action.reopen),
        (" close ", Action.close),
        ("关闭", Action.close),
    ],
)
def test_parse_action(text, action):
    assert parse_action(text) is action


@pytest.mark.parametrize("action", list(Action))
def test_parse_action_accepts_every_key_and_label(action):
    en, zh = ACTION_LABELS[action]
    assert parse_action(action.value) is action
    assert parse_action(en) is action
    assert parse_action(en.swapcase()) is action
    assert parse_action(zh) is action


@pytest.mark.parametrize("text", ["", "finish", "服务中", "新建", "close it"])
def test_parse_action_rejects_unknown_text(text):
    with pytest.raises(ValueError, match="unknown action") as exc:
        parse_action(text)
    assert "request_verification" in str(exc.value)


def test_parsed_labels_drive_transitions():
    s = parse_state("服务中")
    s = next_state(s, parse_action("待料"))
    assert s is State.waiting_parts
    assert next_state(s, parse_action("恢复服务")) is State.in_progress
