"""pytest --keep-vms and pause(): a child pytest run (in a pty, as a person runs it) pauses a
test, lets deploy-harness in, goes on, fails, and leaves exactly its fleet running; `down`
removes it."""
from __future__ import annotations

import sys

import pexpect

from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.interactive import pause
from harness.vm.adopted import is_running

CHILD_TESTS = '''
import pytest
from harness.fleet import FleetSpec, NodeSpec
from harness.interactive import pause

SOLO = FleetSpec("kept", {"solo": NodeSpec(vlans=(1,))})


@pytest.mark.fleet(SOLO)
def test_pause_lets_a_person_in(fleet):
    fleet["solo"].succeed("echo from-test > /tmp/from-test")
    assert pause(fleet, "look around")
    # What the person did while the test waited is there.
    assert fleet["solo"].succeed("cat /tmp/from-cli") == "from-test\\n"


@pytest.mark.fleet(SOLO)
def test_fails_and_leaves_its_state(fleet):
    fleet["solo"].succeed("echo left-by-failed-test > /persist/marker")
    assert False, "fails on purpose"
'''


def test_keep_vms_keeps_exactly_the_fleet_and_down_removes_it(cli, tmp_path):
    (tmp_path / "test_kept_child.py").write_text(CHILD_TESTS)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider", "--keep-vms", f"--vm-accel={cli.accel}",
         f"--vm-artifacts={tmp_path / 'artifacts'}", "test_kept_child.py"],
        cwd=str(tmp_path), env=cli.env, timeout=300, encoding="utf-8", dimensions=(24, 250),
    )
    try:
        child.expect(r"\[vm\] paused \(look around\): the test waits\.")
        child.expect(r"Press Enter to go on with the test")
        # While paused, the nodes are free for deploy-harness.
        assert "fleet kept: running" in cli.ok("status")
        cli.ok("run", "solo", "--fleet", "kept", "--", "cp /tmp/from-test /tmp/from-cli")
        child.sendline("")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    output = child.before
    assert child.exitstatus == 1, output  # one test passed after the pause, one failed
    assert "1 failed, 1 passed" in output
    prefix = f"NDH_FLEETS_DIR={cli.fleets_dir} "
    assert f"{prefix}deploy-harness shell solo --fleet kept" in output
    assert f"{prefix}deploy-harness down --fleet kept" in output
    assert "It is as test test_kept_child.py::test_fails_and_leaves_its_state left it." in output

    # Exactly the fleet runs: its QEMU and its VLAN switch, nothing else of the run.
    recorded = set(cli.recorded_processes("kept"))
    assert len(recorded) == 2 and all(is_running(pid, started) for pid, started in recorded)
    assert cli.running_processes() == recorded
    assert [line for line in cli.ok("status").splitlines() if line.startswith("fleet ")] == ["fleet kept: running"]
    # It is the VM the failed test left.
    assert cli.ok("run", "solo", "--fleet", "kept", "--", "cat /persist/marker") == "left-by-failed-test\n"

    out = cli.ok("down", "--fleet", "kept")
    assert "fleet kept is down" in out
    assert not any(is_running(pid, started) for pid, started in recorded)
    assert not cli.running_processes()
    assert not (cli.fleets_dir / "kept").exists()
    result = cli("status")
    assert result.returncode == 1 and "no fleet is running" in result.stdout


def test_pause_does_nothing_when_nobody_can_answer():
    # Here stdin is not a terminal (pytest captures it): pause returns at once, touching no VM.
    fleet = Fleet(FleetSpec("never-booted", {"x": NodeSpec(vlans=())}))
    try:
        assert pause(fleet) is False
    finally:
        fleet.close()

