"""A directory in the fleets root that fails the trust rule (here one as a node named `../escape`
once left there: mode 0755, a disk in it) is skipped and reported by `status` and `down --all`,
which go on with the other fleets: they used to refuse to run at all, leaving every fleet's
QEMU running. No VM boots: the other fleet is forged, its node's QEMU a stand-in process whose
command line names the fleet's directory, as a real one does."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import scratch_dir
from cli_testlib import Cli, require_console_script

from harness.vm.adopted import start_time


@pytest.fixture
def cli(request: pytest.FixtureRequest):
    require_console_script()
    fleets_dir = scratch_dir("distrust")
    yield Cli(fleets_dir, request.config.getoption("--vm-accel"))
    shutil.rmtree(fleets_dir, ignore_errors=True)


@pytest.fixture
def good_fleet(cli):
    """A fleet `good` whose node alpha runs (a stand-in named qemu-system-x86_64)."""
    directory = cli.fleets_dir / "good"
    (directory / "alpha").mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-c", "import time; time.sleep(600)", f"{directory}/alpha/alpha.qcow2"],
        executable=sys.executable,
    )
    node = {
        "name": "alpha", "pid": qemu.pid, "started": start_time(qemu.pid), "state_dir": str(directory / "alpha"),
        "start_script": str(directory / "alpha" / "bin" / "run-alpha-vm"), "token": "t", "vlans": {},
        "allow_reboot": False, "accel": "tcg", "forwards": [], "boot_timeout": 10,
    }
    state = {"format": 1, "name": "good", "status": "up", "nodes": {"alpha": node}, "switches": []}
    (directory / "fleet.json").write_text(json.dumps(state))
    try:
        yield directory, qemu
    finally:
        qemu.kill()
        qemu.wait()


@pytest.fixture
def escaped(cli) -> Path:
    """What a node named `../escape` left in the fleets root: a directory of the default mode."""
    directory = cli.fleets_dir / "escape"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / "escape.qcow2").write_bytes(b"\0" * 4096)
    return directory


def _refusal(escaped: Path) -> str:
    return (f"deploy-harness: skipped: refusing to use the fleet directory {escaped}: its mode is "
            f"drwxr-xr-x, so others can enter it. To go on: `chmod 700 {escaped}`")


def test_down_all_stops_the_other_fleets_and_reports_the_distrusted_directory(cli, good_fleet, escaped):
    directory, qemu = good_fleet
    result = cli("down", "--all")
    assert result.returncode == 1, result  # not everything is down
    assert f"fleet good is down; removed {directory} (ended pids {qemu.pid})" in result.stdout, result
    assert _refusal(escaped) in result.stderr
    assert not directory.exists()
    assert qemu.poll() is not None, "its QEMU was ended"
    assert (escaped / "escape.qcow2").exists(), "a directory it does not trust is never removed"


def test_status_lists_the_other_fleets_and_reports_the_distrusted_directory(cli, good_fleet, escaped):
    result = cli("status")
    assert result.returncode == 0, result  # a fleet runs
    assert "fleet good: running" in result.stdout
    assert "escape" not in result.stdout
    assert _refusal(escaped) in result.stderr


def test_a_distrusted_directory_alone_is_reported_and_nothing_else_happens(cli, escaped):
    for args in (("status",), ("down", "--all")):
        result = cli(*args)
        assert result.returncode == 1, (args, result)
        assert _refusal(escaped) in result.stderr, (args, result)
    assert (escaped / "escape.qcow2").exists()


def test_a_state_file_whose_node_leads_out_of_its_fleet_is_unreadable(cli):
    """A forged fleet.json whose node `../escape` has its state in the fleets root itself (the
    node's directory check alone cannot see it: both paths lead there)."""
    directory = cli.fleets_dir / "forged"
    escape = cli.fleets_dir / "escape"
    for path in (directory, escape):
        path.mkdir(mode=0o700)
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        node = {
            "name": "../escape", "pid": bystander.pid, "started": start_time(bystander.pid),
            "state_dir": str(directory / "../escape"), "start_script": "/nonexistent/run-escape-vm",
            "token": "t", "vlans": {}, "allow_reboot": False, "accel": "tcg", "forwards": [], "boot_timeout": 10,
        }
        state = {"format": 1, "name": "forged", "status": "up", "nodes": {"../escape": node}, "switches": []}
        (directory / "fleet.json").write_text(json.dumps(state))
        result = cli("run", "--fleet", "forged", "../escape", "true")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert result.returncode == 255, result
    assert ("fleet forged is stale: its fleet.json is unreadable (fleet forged: node name '../escape' is "
            "not usable") in result.stderr
    assert list(escape.iterdir()) == [], "nothing is written outside the fleet's directory"
