"""The test bench itself: a test that fails or hangs while a process it started is running takes
no other test down with it. Each case runs a small suite in a pytest of its own (a subprocess),
with this suite's conftest and settings (warnings are errors, the per-test timeout)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent

# A child that says it is up, then runs for ten minutes unless it is killed.
CHILD = "import sys, time; print('up', flush=True); time.sleep(600)"

SUITE = """
import gc, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import pytest

PIDS = Path(os.environ["ISOLATION_PIDS"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(processes, owned: bool):
    args = [sys.executable, "-c", {child!r}]
    kwargs = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = processes.popen(args, **kwargs) if owned else subprocess.Popen(args, **kwargs)
    with PIDS.open("a") as f:
        f.write(f"{{proc.pid}}\\n")
    assert proc.stdout.readline() == "up\\n"
    return proc


def test_1_fails_on_purpose_with_its_process_running(processes):
    proc = _start(processes, {owned})
    assert proc.poll() is None
    assert False, "on purpose"


def test_2_hangs_with_its_process_running(processes):
    _start(processes, {owned})
    time.sleep(600)  # the per-test timeout ends this


def test_3_the_processes_are_gone_and_nothing_is_left_to_warn(processes):
    gc.collect()  # a Popen and pipes left behind would warn here, failing this test
    for pid in map(int, PIDS.read_text().split()):
        deadline = time.monotonic() + 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"process {{pid}} outlived the test that started it"


def test_4_an_ordinary_test_after_them():
    gc.collect()
    assert sum(range(10)) == 45
"""


def _run(pytester: pytest.Pytester, *, owned: bool) -> pytest.RunResult:
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_suite=SUITE.format(child=CHILD, owned=owned))
    pids = pytester.path / "pids"
    pids.write_text("")
    os.environ["ISOLATION_PIDS"] = str(pids)
    try:
        # this project's settings (filterwarnings = error, the markers, tests/ on the path),
        # one short timeout so the hang ends soon
        return pytester.runpytest_subprocess(
            "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
            "-o", "timeout=5", "-v", str(pytester.path / "test_suite.py"),
            timeout=120,
        )  # fmt: skip
    finally:
        del os.environ["ISOLATION_PIDS"]
        for pid in map(int, pids.read_text().split()):
            with contextlib.suppress(ProcessLookupError):  # the control case leaves them behind
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(150)  # two inner pytest runs, each with a 5 s hang in it
def test_a_failing_or_hanging_test_takes_only_itself_down(pytester: pytest.Pytester) -> None:
    result = _run(pytester, owned=True)
    out = result.stdout.str()
    assert re.search(r"test_1_fails_on_purpose\S* FAILED", out), out
    assert re.search(r"test_2_hangs\S* FAILED", out), out
    assert re.search(r"test_3_the_processes_are_gone\S* PASSED", out), out
    assert re.search(r"test_4_an_ordinary_test_after_them\S* PASSED", out), out
    result.assert_outcomes(passed=2, failed=2)
    # the hang failed with where it hung
    assert "Timeout (>5.0s)" in out or "Timeout >5.0s" in out, out
    assert "time.sleep(600)" in out, out


def test_without_the_fixture_a_failure_would_drag_the_next_tests_down(
    pytester: pytest.Pytester,
) -> None:
    """The control: the same tests with a bare Popen show what the fixture prevents (this is how
    one slow demo test once failed three others)."""
    result = _run(pytester, owned=False)
    out = result.stdout.str()
    assert re.search(r"test_3_the_processes_are_gone\S* FAILED", out), out
    assert "outlived the test that started it" in out or "ResourceWarning" in out, out


if sys.platform != "linux":  # process groups and /proc semantics are what this is about
    pytestmark = pytest.mark.skip(reason="Linux only")
