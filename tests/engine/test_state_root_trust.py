"""One trust rule for every directory the harness keeps state in (harness/private_dirs.py): the
state root of test runs ($NDH_STATE_DIR, or its default) is refused exactly as deploy-harness
refuses a fleets root: a symlink, a directory of another user, or one open to others (0777,
1777, 0755). Nothing is written into, or cleaned from, a refused root; pytest says so in its
header and each fleet fails with the refusal. No VM boots here."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from harness import state_dirs
from harness.keep import FleetStateError
from harness.keep.paths import check_private
from harness.private_dirs import UntrustedDirectory
from support import scratch_dir

NOBODY = 65534


@pytest.fixture
def root():
    """A directory of this run (short, as state roots are), removed afterwards."""
    path = scratch_dir("trust-root")
    yield path
    if path.is_symlink():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)


def _spoil(path: Path, kind: str) -> str:
    """Make `path` fail the rule as `kind` says; returns the problem the refusal names."""
    if kind in ("0777", "1777", "0755"):
        path.chmod(int(kind, 8))
        return f"its mode is {stat.filemode(path.stat().st_mode)}, so others can enter it"
    if kind == "symlink":
        target = Path(str(path) + "-target")
        path.rename(target)
        path.symlink_to(target)
        return "it is a symbolic link"
    if os.getuid() != 0:
        pytest.skip("needs root: a directory owned by another user is made with os.chown")
    os.chown(path, NOBODY, NOBODY)
    return f"it belongs to uid {NOBODY}, not to you (uid {os.getuid()})"


KINDS = ["0777", "1777", "0755", "symlink", "another user"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_state_root_that_is_not_private_is_refused_and_nothing_is_written_there(root, kind, monkeypatch):
    problem = _spoil(root, kind)
    monkeypatch.setenv(state_dirs.ENV, str(root))
    before = sorted(os.listdir(root))
    try:
        with pytest.raises(UntrustedDirectory) as refused:
            state_dirs.make("pair")
        assert str(refused.value).startswith(f"refusing to use the state root {root}: {problem}. To go on: ")
        fix = f"`chmod 700 {root}`" if problem.startswith("its mode") else "set $NDH_STATE_DIR to a private directory"
        assert fix in str(refused.value)
        assert sorted(os.listdir(root)) == before
        assert "REFUSED: " + problem in state_dirs.describe_root()
    finally:
        if kind == "symlink":
            shutil.rmtree(Path(str(root) + "-target"))


@pytest.mark.parametrize("kind", KINDS)
def test_the_cli_and_the_plugin_refuse_a_root_for_the_same_reason(root, kind):
    problem = _spoil(root, kind)
    try:
        with pytest.raises(FleetStateError) as cli_refusal:
            check_private(root, "fleets directory")
        with pytest.raises(UntrustedDirectory) as run_refusal:
            state_dirs.make("pair", root=str(root))
        assert f": {problem}. To go on: " in str(cli_refusal.value)
        assert run_refusal.value.problem == problem
    finally:
        if kind == "symlink":
            shutil.rmtree(Path(str(root) + "-target"))


def test_a_refused_root_is_not_cleaned(root):
    dead = root / "ndh-pair-abcd"
    dead.mkdir(mode=0o700)
    (dead / "owner.json").write_text(json.dumps({"pid": 1, "start_time": -1}))  # an owner that is gone
    root.chmod(0o1777)  # anyone could have put it there
    with pytest.raises(UntrustedDirectory):
        state_dirs.collect(str(root))
    assert dead.exists()
    root.chmod(0o700)
    assert state_dirs.collect(str(root)) == [dead]


def test_a_missing_state_root_is_made_private(root):
    fresh = root / "state"
    made = state_dirs.make("pair", root=str(fresh))
    assert made.parent == fresh and stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_pytest_says_so_and_each_fleet_fails_with_the_refusal(pytester, root, monkeypatch):
    root.chmod(0o777)
    monkeypatch.setenv(state_dirs.ENV, str(root))
    monkeypatch.setenv("NDH_DISK_AIO", "threads")  # no QEMU asked about io_uring: nothing boots
    pytester.makepyfile(test_fleet="""
import pytest
from harness.fleet import FleetSpec, NodeSpec

@pytest.mark.fleet(FleetSpec("refused", {"solo": NodeSpec(vlans=())}))
def test_boots(fleet):
    pass
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vm-accel=tcg")
    out = result.stdout.str()
    refusal = f"refusing to use the state root {root}: its mode is drwxrwxrwx, so others can enter it"
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    assert f"vm-state: {root} (from $NDH_STATE_DIR); REFUSED: its mode is drwxrwxrwx" in out
    assert f"[vm] {refusal}" in out  # at the start of the run
    assert f"UntrustedDirectory: {refusal}" in out  # the fleet's error
    assert os.listdir(root) == []
