"""A self-test run that is interrupted or killed cleans up after itself as far as it can, and a
later run removes the rest: SIGTERM to `pytest tests/` (with and without -n 2) ends the child
pytest runs its tests started (support/leash.py), instead of leaving one to run on for minutes;
the scratch directories of a run killed outright are removed by the next run once their owner
is gone (support/scratch.py). Child pytest runs through pytester, with tests/conftest.py."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.vm.adopted import is_running, start_time
from support.scratch import ROOT_ENV, owner_of, run_token

TESTS = Path(__file__).resolve().parents[1]
# Generous bounds of waits for something that happens by itself (never an assertion on time).
STARTED_WITHIN = 180
GONE_WITHIN = 120

GRANDCHILD = """
import os, time

def test_runs_on():
    with open(os.environ["NDH_GRANDCHILD_PID"], "w") as handle:
        handle.write(f"{os.getpid()}")
    time.sleep(600)
"""

CHILD = f"""
def test_starts_a_child_run(pytester):
    pytester.makepyfile(test_grandchild={GRANDCHILD!r})
    pytester.runpytest_subprocess("-p", "no:cacheprovider")
"""


def _child_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytester",
            "-o", f"pythonpath={TESTS}", *args]


def _wait_for(condition, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {within} s)")
        time.sleep(0.2)


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_sigterm_to_the_suite_ends_the_child_runs_of_its_tests(pytester, monkeypatch, xdist):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_child=CHILD)
    pid_file = pytester.path / "grandchild.pid"
    monkeypatch.setenv("NDH_GRANDCHILD_PID", str(pid_file))
    suite = pytester.popen(_child_args(*xdist), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grandchild: tuple[int, int | None] | None = None
    try:
        _wait_for(lambda: pid_file.exists() and pid_file.read_text() or suite.poll() is not None,
                  STARTED_WITHIN, "the child run of the suite's test never started")
        assert suite.poll() is None, "the suite ended before its test started a child run"
        pid = int(pid_file.read_text())
        grandchild = (pid, start_time(pid))
        assert is_running(*grandchild)
        suite.send_signal(signal.SIGTERM)  # a cancelled CI job
        suite.wait(GONE_WITHIN)
        _wait_for(lambda: not is_running(*grandchild), GONE_WITHIN,
                  f"the suite's child run (pid {pid}) still runs after the suite ended")
    finally:
        if grandchild is not None and is_running(*grandchild):
            os.kill(grandchild[0], signal.SIGKILL)  # our own orphan, found by pid and start time


KILLED = """
import os, signal
from support import scratch_dir

def test_killed():
    path = scratch_dir("killed")
    (path / "disk.qcow2").write_bytes(bytes(4096))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_later_run_removes_the_scratch_directories_of_a_killed_one(pytester, monkeypatch):
    scratch = pytester.path / "scratch"  # its own root: no other run on this machine sweeps it
    scratch.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(scratch))
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_killed=KILLED)
    killed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", f"pythonpath={TESTS}", "test_killed.py")
    assert killed.ret == -signal.SIGKILL
    [left] = scratch.glob("ndh-killed-*")
    assert owner_of(left) is not None and not is_running(*owner_of(left))
    # Kept: a directory of a run that still runs (this one), and one a live process still names.
    live = scratch / f"ndh-live-{run_token()}-abcd1234"
    busy = scratch / left.name.replace("ndh-killed-", "ndh-busy-")
    for path in (live, busy):
        path.mkdir()
    user = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", str(busy / "disk")])
    try:
        pytester.makepyfile(test_later="def test_nothing():\n    pass\n")
        later = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", f"pythonpath={TESTS}", "test_later.py")
    finally:
        user.kill()
        user.wait()
    assert later.ret == 0, later.stdout.str()
    later.stdout.fnmatch_lines([f"removed 1 scratch directory of dead self-test runs: {left}"])
    assert not left.exists()
    assert live.exists() and busy.exists()
    shutil.rmtree(scratch)
