"""Where `logs` finds a node's logs when the fleet's record lists no nodes (an `up` killed while
it booted; the real one is in test_cli_interrupted_up.py), and what it says when there are none."""
from __future__ import annotations

import pytest

from harness.cli.errors import CliError
from harness.cli.node_logs import log_path
from harness.keep.records import FleetRecord


@pytest.fixture
def killed(tmp_path) -> FleetRecord:
    """The record `up` writes when it claims a fleet, of an `up` that is gone (no such pid)."""
    directory = tmp_path / "killed"
    directory.mkdir(mode=0o700)
    (directory / "vde1.ctl").mkdir()  # a VLAN switch's socket directory: no node
    for node in ("alpha", "beta"):
        (directory / node / "bin").mkdir(parents=True)
        (directory / node / "transcript.log").write_text("[10:00:00] # starting run-vm\n")
    (directory / "alpha" / "serial.log").write_text("booting alpha\n")
    return FleetRecord("killed", directory, status="booting", origin="deploy-harness up",
                       owner_pid=2**22 + 1, owner_started=1)


def test_the_logs_of_a_node_whose_boot_began_are_found_without_a_record(killed):
    assert log_path(killed, "alpha", transcript=False) == killed.directory / "alpha" / "serial.log"
    assert log_path(killed, "beta", transcript=True) == killed.directory / "beta" / "transcript.log"


def test_a_node_that_never_started_qemu_says_so(killed):
    with pytest.raises(CliError) as error:
        log_path(killed, "beta", transcript=False)
    assert str(error.value) == (
        "fleet killed has recorded no nodes (stale: its boot was interrupted (deploy-harness up, "
        f"pid {2**22 + 1}, is gone)); node beta has no serial.log in {killed.directory / 'beta'}: its "
        "boot stopped before QEMU started (the serial log begins when QEMU does)"
    )


@pytest.mark.parametrize("node", ["gamma", "vde1.ctl", "../killed", ""])
def test_an_unknown_node_lists_the_node_directories_there(killed, node):
    with pytest.raises(CliError) as error:
        log_path(killed, node, transcript=False)
    assert f"it has no directory of a node {node!r} in {killed.directory} (node directories there: alpha, beta)" \
        in str(error.value)
    assert "deploy-harness down --fleet killed" in str(error.value)
