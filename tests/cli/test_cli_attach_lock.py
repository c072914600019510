"""A node of a kept fleet whose console cannot be reached: the attach fails and lets go of the
node's lock again, for `deploy-harness shell` (attached) and `pytest --reuse-fleet` (ReusedFleet)
alike, which share the lock-and-attach step, so the next driver is not told the node is in use.
No VM: a `sleep` stands in for the node's QEMU."""
from __future__ import annotations

import subprocess

import pytest

from harness.fleet import FleetSpec, NodeSpec
from harness.keep import ReusedFleet, attached
from harness.keep.locks import NodeLock
from harness.keep.records import FleetRecord, NodeRecord
from harness.vm import MachineError
from harness.vm.adopted import start_time


@pytest.fixture
def record(tmp_path):
    stand_in = subprocess.Popen(["sleep", "300"])
    (tmp_path / "alpha").mkdir()  # no console socket in it: the attach cannot connect
    node = NodeRecord(
        name="alpha", pid=stand_in.pid, started=start_time(stand_in.pid), state_dir=str(tmp_path / "alpha"),
        start_script=str(tmp_path / "run-alpha-vm"), token="t0k", vlans={}, allow_reboot=False,
        accel="tcg", forwards=[], boot_timeout=60,
    )
    yield FleetRecord(name="pair", directory=tmp_path, status="up", accel="tcg", nodes={"alpha": node})
    stand_in.kill()
    stand_in.wait()


def assert_free(record: FleetRecord) -> None:
    lock = NodeLock(record.directory / "alpha", "alpha")
    lock.acquire("the next driver")  # NodeBusy if the failed attach kept the lock
    lock.release()


def test_a_failed_shell_attach_lets_go_of_the_node(record):
    with pytest.raises(MachineError, match="cannot connect to its console"):
        with attached(record, "alpha", "deploy-harness shell"):
            pytest.fail("attached to a node without a console")
    assert_free(record)


def test_a_failed_reuse_lets_go_of_the_node(record):
    reused = ReusedFleet(record, "pytest --reuse-fleet")
    with pytest.raises(MachineError, match="cannot connect to its console"):
        reused.open(FleetSpec("pair", {"alpha": NodeSpec()}))
    assert reused.locks == []
    assert_free(record)
