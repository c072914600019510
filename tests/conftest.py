"""The self-tests leave nothing behind. After the whole run (the xdist controller, once every
worker has ended), no `ndh-*` directory may remain, in /tmp or in the harness's state root, that
this run made: a scratch directory with the run's token in its name, or a state directory of the
harness whose owner (owner.json) has gone. A leftover fails the run and is named.

What a killed run could not remove, a later one does: at its start, every scratch directory of a
run whose owner is gone (the token names it, support/scratch.py) is removed, in one line (the
harness's plugin does the same for state directories). And a child pytest a test starts through
pytester is leashed (support/leash.py): SIGTERM when its parent dies, ended when its test ends,
so an interrupted run leaves no child booting VMs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import state_dirs
from harness.images.cachedir import cache_root
from harness.vm.adopted import is_running
from support.leash import Leash
from support.scratch import RUN_TOKEN_ENV, collect_abandoned, new_run_token, run_token, scratch_root

ROOTS = (scratch_root(), Path(state_dirs.state_root()))
# Read before pytester points HOME at a temporary directory.
CACHE = cache_root()
_BEFORE = pytest.StashKey[set]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # workers inherit the controller's token
        os.environ[RUN_TOKEN_ENV] = new_run_token()


def _left_by_this_run(path: Path) -> bool:
    if f"-{run_token()}-" in path.name:
        return True
    try:
        owner = json.loads((path / "owner.json").read_text())
    except (OSError, ValueError):
        return False  # not a state directory of the harness, nor our scratch: another run's
    return not is_running(owner.get("pid"), owner.get("start_time"))


def _ndh_dirs() -> set[Path]:
    return {p for root in ROOTS for p in root.glob("ndh-*")
            if p.is_dir() and not p.is_symlink() and p.stat().st_uid == os.getuid()}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        removed = collect_abandoned()
        if removed:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            line = (f"removed {len(removed)} scratch director{'y' if len(removed) == 1 else 'ies'} "
                    f"of dead self-test runs: {', '.join(map(str, removed))}")
            if reporter is not None:
                reporter.write_line(line)
    session.config.stash[_BEFORE] = _ndh_dirs()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or _BEFORE not in session.config.stash:
        return
    left = sorted(p for p in _ndh_dirs() - session.config.stash[_BEFORE] if _left_by_this_run(p))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"self-tests left {len(left)} director{'y' if len(left) == 1 else 'ies'} behind: "
                            + ", ".join(map(str, left)), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester with the user's cache (the micro image, the KVM verdict): its temporary HOME
    would make every child run build the micro image again. Its child processes are leashed:
    one still running when the test ends (an interrupted run) is ended, and a failure."""
    monkeypatch.setenv("NDH_CACHE_DIR", str(CACHE))
    leash = Leash(pytester.popen)
    monkeypatch.setattr(pytester, "popen", leash.popen)
    yield pytester
    ended = leash.end_all()
    assert not ended, f"child runs still running when the test ended, now ended: {ended}"
