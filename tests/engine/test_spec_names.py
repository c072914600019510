"""Fleet and node names are checked where they are declared (FleetSpec), with a ValueError that
names the rule: a node called `../escape` once wrote its disk and sockets outside the run's
directory, `../evil` as a fleet name ended in a raw FileNotFoundError, and a space broke QEMU's
options. Node names are host names as NixOS accepts them (the NixOS test framework makes each
node's name its networking.hostName); every spec of the project passes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness import fleet_specs, state_dirs
from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.specs import FLEET_NAME_RULE, NODE_NAME_RULE

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "-dash", "with space", "x" * 41, ""])
def test_a_fleet_name_that_could_leave_its_directory_is_refused_naming_the_rule(name):
    with pytest.raises(ValueError) as refused:
        FleetSpec(name, {"alpha": NodeSpec()})
    assert str(refused.value) == f"fleet name {name!r} is not usable: {FLEET_NAME_RULE}"


@pytest.mark.parametrize("node", ["../escape", "a/b", "my node", "-a", "a-", "_a", "dot.ted", "x" * 64, ""])
def test_a_node_name_that_is_no_nixos_host_name_is_refused_naming_the_rule(node):
    with pytest.raises(ValueError) as refused:
        FleetSpec("pair", {node: NodeSpec(), "beta": NodeSpec()})
    assert f"fleet pair: node name {node!r} is not usable" in str(refused.value)
    assert NODE_NAME_RULE in str(refused.value)


def test_host_names_that_differ_only_in_case_are_refused():
    with pytest.raises(ValueError, match="node names 'Alpha' and 'alpha' differ only in case: as host names they are one"):
        FleetSpec("pair", {"alpha": NodeSpec(), "Alpha": NodeSpec()})


@pytest.mark.parametrize("node", ["a", "alpha", "target2", "kvm-probe", "web_1", "Ingress", "x" * 63])
def test_host_names_nixos_accepts_are_accepted(node):
    assert list(FleetSpec("pair", {node: NodeSpec()}).nodes) == [node]


def test_every_spec_of_the_project_passes():
    sys.path.insert(0, str(REPO / "scenarios"))
    try:
        import scenario_fleet  # the NixOS test's nodes, from test/fleet/facts.json
        import test_preflight
    finally:
        sys.path.remove(str(REPO / "scenarios"))
    facts = json.loads((REPO / "test" / "fleet" / "facts.json").read_text())
    assert set(scenario_fleet.NIXOS_FLEET.nodes) == set(facts["nodes"])
    assert set(test_preflight.PREFLIGHT.nodes) == {"left", "right"}
    assert set(fleet_specs.MICRO.nodes) == {"alpha", "beta"}


def test_a_node_renamed_after_the_spec_was_declared_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv(state_dirs.ENV, str(tmp_path / "state"))
    nodes = {"alpha": NodeSpec()}
    spec = FleetSpec("pair", nodes)
    nodes["../escape"] = nodes.pop("alpha")  # the mapping is the caller's and can change
    with pytest.raises(ValueError, match="node name '../escape' is not usable"):
        Fleet(spec)
    assert not (tmp_path / "state").exists() and not (tmp_path / "escape").exists()


def test_a_json_spec_with_a_bad_node_name_is_a_spec_error(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "pair", "nodes": {"../escape": {}}}))
    with pytest.raises(fleet_specs.SpecError) as refused:
        fleet_specs.load(str(spec))
    assert str(refused.value).startswith(f"spec file {spec}: fleet pair: node name '../escape' is not usable")


def test_a_json_spec_named_after_a_file_with_a_space_is_a_spec_error(tmp_path):
    spec = tmp_path / "my fleet.json"
    spec.write_text(json.dumps({"nodes": {"alpha": {}}}))
    with pytest.raises(fleet_specs.SpecError, match="fleet name 'my fleet' is not usable"):
        fleet_specs.load(str(spec))


def test_a_bad_name_in_a_test_file_is_a_collection_error_that_writes_nothing(pytester, monkeypatch):
    state = pytester.path / "state"
    monkeypatch.setenv(state_dirs.ENV, str(state))
    pytester.makepyfile(test_escape="""
import pytest
from harness.fleet import FleetSpec, NodeSpec

@pytest.mark.fleet(FleetSpec("escape", {"../escape": NodeSpec()}))
def test_escapes(fleet):
    pass
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vm-accel=tcg")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()  # a collection error
    result.stdout.fnmatch_lines(["*ValueError: fleet escape: node name '../escape' is not usable*"])
    assert not state.exists() and not (pytester.path / "escape").exists()
