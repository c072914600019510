"""Pre-flight: can this host run the harness's VMs at all? Two micro-image nodes on a VLAN
boot, reach each other by name, and a snapshot restore undoes a change. Runs first in the
nightly job; if it fails, every NixOS scenario would fail for a reason that is not a deploy bug."""
import pytest

from harness.fleet import FleetSpec, NodeSpec

PREFLIGHT = FleetSpec(
    "preflight", {"left": NodeSpec(vlans=(1,)), "right": NodeSpec(vlans=(1,))}
)


@pytest.mark.preflight
@pytest.mark.fleet(PREFLIGHT)
def test_vms_boot_and_reach_each_other_by_name(fleet):
    left, right = fleet["left"], fleet["right"]
    left.succeed("ping -c 1 -W 5 right")
    right.succeed("ping -c 1 -W 5 left")


@pytest.mark.preflight
@pytest.mark.fleet(PREFLIGHT)
def test_snapshot_restore_undoes_a_change(fleet):
    left = fleet["left"]
    left.snapshot("preflight")
    left.succeed("echo changed > /persist/changed")
    left.restore("preflight")
    left.fail("test -e /persist/changed")
