"""fieldloop.stopping in a process of its own: the first stop signal asks the job to stop, and a
job that does not (a stuck thread, a hung call) is ended after the grace period, or at once by a
second signal; before a job is running, a signal unwinds the stack as Ctrl-C does."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from support import Processes

# A job that is told to stop (it says so) and then never does: its main thread keeps sleeping.
STUCK = """
import sys, time
from fieldloop.stopping import Stopper
stop = Stopper(grace={grace})
stop.install()
with stop.graceful(lambda: print("asked to stop", flush=True)):
    print("running", flush=True)
    while True:
        time.sleep(0.05)
"""

# Nothing stoppable running yet: the signal raises KeyboardInterrupt where the code is.
EARLY = """
import time
from fieldloop.stopping import Stopper
stop = Stopper()
stop.install()
try:
    print("running", flush=True)  # inside: the signal may come the moment this is read
    time.sleep(60)
except KeyboardInterrupt:
    print(f"unwound, exit code {stop.exit_code}", flush=True)
"""


def _start(processes: Processes, code: str) -> subprocess.Popen[str]:
    proc = processes.popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "running\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_job_that_does_not_stop_is_ended_after_the_grace(
    processes: Processes, sig: signal.Signals
) -> None:
    proc = _start(processes, STUCK.format(grace=1.0))
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    took = time.monotonic() - sent
    assert "asked to stop" in out  # the graceful request came first
    assert 0.9 <= took < 5, took
    assert proc.returncode == 128 + sig
    assert f"not stopped within 1 s of {sig.name}; exiting now" in err


def test_a_second_signal_ends_it_at_once(processes: Processes) -> None:
    proc = _start(processes, STUCK.format(grace=60.0))
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "asked to stop\n"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 5
    assert "a second stop signal (SIGINT); exiting now" in err
    assert proc.returncode == 128 + signal.SIGTERM  # the code of the stop that was asked for


def test_before_any_job_a_signal_unwinds_like_ctrl_c(processes: Processes) -> None:
    proc = _start(processes, EARLY)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert "unwound, exit code 143" in out, out + err
    assert proc.returncode == 0  # the program handled it and ended normally
