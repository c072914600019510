"""What differs between a kept fleet and a test's FleetSpec (`--reuse-fleet` boots its own
fleet when none of the named ones fits, and says why): harness.keep.reuse.differences."""
from __future__ import annotations

from harness.fleet import FleetSpec, NodeSpec
from harness.fleet_specs import MICRO
from harness.keep import differences, why_not_matching
from harness.keep.records import FleetRecord, NodeRecord

# The README's PAIR: beta may not reboot, where the `micro` fleet's beta may.
PAIR = FleetSpec("pair", {"alpha": NodeSpec(vlans=(1,), allow_reboot=True), "beta": NodeSpec()})


def record_of(spec: FleetSpec, tmp_path) -> FleetRecord:
    nodes = {
        name: NodeRecord(name, None, None, str(tmp_path / name), "run-vm", "token",
                         {vlan: f"vde{vlan}.ctl" for vlan in node.vlans}, node.allow_reboot, "tcg",
                         [(port, 40000 + port) for port in node.forward_ports], 300)
        for name, node in spec.nodes.items()
    }
    return FleetRecord(spec.name, tmp_path, status="up", nodes=nodes)


def test_the_readme_pair_against_the_micro_fleet(tmp_path):
    assert differences(record_of(MICRO, tmp_path), PAIR) == ["beta: allow_reboot True there, False in the spec"]


def test_missing_and_extra_nodes_vlans_and_ports(tmp_path):
    kept = record_of(FleetSpec("k", {"alpha": NodeSpec(vlans=(1, 2), forward_ports=(80,)), "old": NodeSpec()}), tmp_path)
    wanted = FleetSpec("w", {"alpha": NodeSpec(vlans=(1,), forward_ports=(80, 443)), "new": NodeSpec()})
    assert differences(kept, wanted) == [
        "lacks node new",
        "has nodes the spec does not: old",
        "alpha: vlans (1, 2) there, (1) in the spec",
        "alpha: forward_ports (80) there, (80, 443) in the spec",
    ]
    assert differences(kept, FleetSpec("same", {"alpha": NodeSpec(vlans=(1, 2), forward_ports=(80,)),
                                                "old": NodeSpec()})) == []


def test_why_not_names_each_kept_fleet(tmp_path, monkeypatch):
    fleets = tmp_path / "fleets"
    fleets.mkdir(mode=0o700)
    (fleets / "micro").mkdir(mode=0o700)
    record_of(MICRO, fleets / "micro").write()
    monkeypatch.setenv("NDH_FLEETS_DIR", str(fleets))
    assert why_not_matching(["micro", "nosuch"], PAIR) == (
        "micro: beta: allow_reboot True there, False in the spec | "
        f"nosuch: no fleet named 'nosuch' in {fleets} (fleets: micro). Start one with `deploy-harness up`."
    )
