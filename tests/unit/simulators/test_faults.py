"""simulators.faults: which behaviour a device shows at each moment of scenario time."""

from __future__ import annotations

import pytest

from simulators.faults import NORMAL, Behaviour, DeviceFault, behaviour


def test_no_fault_is_normal_and_windows_are_half_open() -> None:
    f = (DeviceFault("comm_loss", 10.0, 20.0),)
    assert behaviour((), 5.0) is NORMAL
    assert behaviour(f, 9.999) is NORMAL
    assert behaviour(f, 10.0).silent
    assert behaviour(f, 19.999).silent
    assert behaviour(f, 20.0) is NORMAL


def test_open_ended_faults_last_to_the_end() -> None:
    assert behaviour((DeviceFault("wrong_order", 1.0, None),), 1e9).swapped


def test_overlapping_faults_combine() -> None:
    faults = (
        DeviceFault("slow", 0.0, 100.0, delay=2.0),
        DeviceFault("slow", 50.0, 60.0, delay=5.0),
        DeviceFault("exception", 55.0, 70.0, code=6),
        DeviceFault("drop_connection", 58.0, 59.0),
    )
    assert behaviour(faults, 10.0) == Behaviour(delay=2.0)
    assert behaviour(faults, 56.0) == Behaviour(delay=5.0, exception=6)
    assert behaviour(faults, 58.5) == Behaviour(delay=5.0, exception=6, drop=True)
    assert behaviour(faults, 65.0) == Behaviour(delay=2.0, exception=6)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"kind": "comm_loss", "start": 5.0, "end": 5.0}, "must come after"),
        ({"kind": "slow", "start": 0.0, "end": None}, "delay"),
        ({"kind": "exception", "start": 0.0, "end": None, "code": 0}, "code must be 1..255"),
    ],
)
def test_impossible_faults_are_refused(kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        DeviceFault(**kwargs)
