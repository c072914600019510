"""lib/deploy-nodes.nix and flake.nix's deploy wiring, evaluated with builtins alone.

The generator is fed tests/flake/mock-fleet.nix (mock NixOS configurations and mock deploy-rs
activation functions). The flake tests copy the real flake.nix into a temporary flake whose
nixpkgs and deploy-rs inputs are those mocks, then evaluate it the way deploy-rs does
(`nix eval --json <flake>#deploy --apply ...`, serokell/deploy-rs src/cli.rs
get_deployment_data), purely and with --impure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.upstream import deploy_rs_src

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "lib" / "deploy-nodes.nix"
HOST_MODULES = REPO / "lib" / "host-modules.nix"
MOCKS = Path(__file__).resolve().parent / "mock-fleet.nix"
TEST_HOST_VARIABLE = "HOMELAB_DEPLOY_TEST_HOST"
FLAKE_FEATURES = ["--extra-experimental-features", "nix-command flakes"]


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found on PATH: these tests evaluate Nix (install Nix, e.g. Debian's nix-bin)")
    return path


def _environment(test_host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TEST_HOST_VARIABLE}
    if test_host is not None:
        env[TEST_HOST_VARIABLE] = test_host
    return env


def generate(test_host: str | None = "", *, introspect: bool = False) -> subprocess.CompletedProcess[str]:
    """Evaluate the generator on the mocks; test_host None passes a Nix null."""
    _require("nix-instantiate")
    # Introspected paths are printed as their `introspection` records.
    expr = (
        f"{{ testHost, introspect }}: let mocks = import {json.dumps(str(MOCKS))} {{ inherit introspect; }}; "
        f"d = import {json.dumps(str(GENERATOR))} {{ activate = mocks.activate; inherit testHost; }} mocks.configs; "
        "in if !introspect then d else d // { nodes = builtins.mapAttrs (_: n: n // { profiles = "
        "builtins.mapAttrs (_: p: p // { path = p.path.introspection; }) n.profiles; }) d.nodes; }"
    )
    args = ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr]
    args += ["--arg", "introspect", "true" if introspect else "false"]
    args += ["--arg", "testHost", "null"] if test_host is None else ["--argstr", "testHost", test_host]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=_environment(None))


def generated(test_host: str | None = "", *, introspect: bool = False) -> dict:
    result = generate(test_host, introspect=introspect)
    assert result.returncode == 0, f"deploy-nodes.nix failed to evaluate:\n{result.stderr}"
    return json.loads(result.stdout)


# --- the generator -------------------------------------------------------------------------


def test_fleet_main_deploy_has_only_deployable_hosts_with_system_profiles():
    nodes = generated("")["nodes"]
    assert sorted(nodes) == ["Alpha", "Beta"], "Template has no deploy user and must never be a node"
    for name, node in nodes.items():
        assert list(node["profiles"]) == ["system"], f"{name}: main deploy must only carry `system`"
        assert node["profiles"]["system"]["path"].endswith(f"-activatable-nixos-system-{name}")
        assert "profilePath" not in node["profiles"]["system"]


def test_fleet_nodes_take_their_settings_from_each_host():
    nodes = generated("")["nodes"]
    assert nodes["Alpha"]["hostname"] == "192.0.2.10"
    assert nodes["Beta"]["hostname"] == "beta.example"
    for node in nodes.values():
        assert node["sshUser"] == "deploy"
        assert node["user"] == "root"
        assert node["magicRollback"] is True and node["autoRollback"] is True
        assert node["confirmTimeout"] == 30
    assert nodes["Alpha"]["tempPath"] == "/tmp"
    assert nodes["Beta"]["tempPath"] == "/var/lib/deploy-rs"
    assert "activationTimeout" not in nodes["Alpha"], "null must leave deploy-rs's default in place"
    assert nodes["Beta"]["activationTimeout"] == 20


def test_fleet_null_test_host_means_main_deploy():
    assert generated(None) == generated("")


def test_fleet_system_profile_uses_activate_nixos_for_the_host_platform():
    profile = generated("", introspect=True)["nodes"]["Alpha"]["profiles"]["system"]["path"]
    assert profile == {"kind": "nixos", "system": "x86_64-linux", "host": "Alpha"}


def test_fleet_test_deploy_has_only_the_requested_host_with_only_the_test_profile():
    nodes = generated("Beta")["nodes"]
    assert list(nodes) == ["Beta"]
    profiles = nodes["Beta"]["profiles"]
    assert list(profiles) == ["test"]
    # Never the system profile: its generations are what the boot loader offers.
    assert profiles["test"]["profilePath"] == "/nix/var/nix/profiles/homelab-test"
    assert nodes["Beta"]["hostname"] == "beta.example"
    assert nodes["Beta"]["tempPath"] == "/var/lib/deploy-rs"


def _activation_lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_fleet_test_profile_runs_switch_to_configuration_test_on_the_toplevel():
    path = generated("Beta", introspect=True)["nodes"]["Beta"]["profiles"]["test"]["path"]
    assert path["kind"] == "custom"
    assert path["system"] == "x86_64-linux"
    assert path["base"] == "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-Beta"
    activation = _activation_lines(path["script"])
    assert '"$PROFILE"/bin/switch-to-configuration test' in activation
    assert not any("switch-to-configuration switch" in line or "switch-to-configuration boot" in line for line in activation)
    assert path["dryActivate"].strip() == '"$PROFILE"/bin/switch-to-configuration dry-activate'
    # `deploy --boot` on a test branch must fail instead of touching the boot loader.
    assert path["boot"] is not None
    assert "switch-to-configuration" not in path["boot"]
    assert "exit 1" in path["boot"]


def _test_branch_scripts() -> dict:
    expr = f"let s = import {json.dumps(str(REPO / 'lib' / 'test-branch-activation.nix'))} {{ }}; in s // {{ activate = s.activate \"@RETURN@\"; refuseBoot = s.refuseBoot \"@RETURN@\"; }}"
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fleet_test_closure_carries_the_return_closure_its_rollback_runs():
    """The generation deploy-rs's rollback runs is the return closure, referenced by the test
    closure's own scripts (so nix copy brings it, and signing the closure signs it)."""
    import hashlib

    path = generated("Beta", introspect=True)["nodes"]["Beta"]["profiles"]["test"]["path"]
    scripts = _test_branch_scripts()
    return_closure = (
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-activatable-"
        + hashlib.md5(scripts["returnToPrevious"].encode()).hexdigest()
    )
    assert path["script"] == scripts["activate"].replace("@RETURN@", return_closure)
    assert path["boot"] == scripts["refuseBoot"].replace("@RETURN@", return_closure)
    assert scripts["testProfile"] == "/nix/var/nix/profiles/homelab-test"
    # Not a system-profiles/<p> profile: systemd-boot-builder.py makes boot entries for those.
    assert "system-profiles" not in scripts["testProfile"]
    returning = _activation_lines(scripts["returnToPrevious"])
    assert any(line.endswith("/bin/switch-to-configuration test") for line in returning)
    assert not any("switch-to-configuration switch" in line or "switch-to-configuration boot" in line for line in returning)


@pytest.mark.parametrize("host", ["Nope", "Template", "alpha"])
def test_fleet_unknown_or_undeployable_test_host_is_a_clear_error(host):
    result = generate(host)
    assert result.returncode != 0, f"{host!r} must not evaluate to a deploy"
    assert f'{TEST_HOST_VARIABLE}="{host}" is not a deployable host' in result.stderr
    assert "Deployable hosts (homelab.users.deploy.enable = true): Alpha, Beta" in result.stderr
    assert "Hosts without the deploy user: Template" in result.stderr


# --- deploy-rs's schema --------------------------------------------------------------------


def _deploy_rs_schema() -> dict:
    """deploy-rs's interface.json (the JSON schema of the `deploy` output), from the deploy-rs
    source tree in DEPLOY_RS_SRC."""
    path = deploy_rs_src() / "interface.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        pytest.fail(f"{path} is not a readable JSON file: {exc}")


@pytest.mark.parametrize("test_host", ["", "Alpha", "Beta"])
def test_fleet_deploy_output_matches_deploy_rs_schema(test_host):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is missing from this Python: pip install -e '.[test]' into .venv (ci/bootstrap does)")
    schema = _deploy_rs_schema()
    # interface.json names "http://json-schema.org/draft/2019-09/schema#", which jsonschema
    # does not recognise by that spelling; it is draft 2019-09.
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    deploy = generated(test_host)
    errors = sorted(validator.iter_errors(deploy), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_fleet_schema_check_rejects_a_broken_node():
    """The schema validation above can fail: a node without hostname is rejected."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is missing from this Python: pip install -e '.[test]' into .venv (ci/bootstrap does)")
    schema = _deploy_rs_schema()
    deploy = generated("")
    del deploy["nodes"]["Alpha"]["hostname"]
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(deploy))


# --- the real flake.nix, evaluated like deploy-rs does ----------------------------------------


@pytest.fixture(scope="module")
def mock_flake(tmp_path_factory) -> Path:
    """A flake whose outputs are the real flake.nix's, with mock nixpkgs, deploy-rs and sops-nix inputs."""
    _require("nix")
    root = tmp_path_factory.mktemp("mock-flake")
    fleet = root / "fleet"
    (fleet / "lib").mkdir(parents=True)
    shutil.copy(REPO / "flake.nix", fleet / "flake.nix")
    for name in ["deploy-nodes.nix", "test-branch-activation.nix", "host-modules.nix", "fleet-hosts.nix",
                 "scrape-targets.nix", "twin-addresses.nix"]:
        shutil.copy(REPO / "lib" / name, fleet / "lib" / name)
    shutil.copytree(REPO / "twins", fleet / "twins")
    shutil.copy(MOCKS, root / "mock-fleet.nix")
    for host in ["Alpha", "Beta", "Template"]:
        (fleet / "hosts" / host).mkdir(parents=True)
        (fleet / "hosts" / host / "default.nix").write_text("{ }\n")
    # Files next to the host folders are not hosts.
    (fleet / "hosts" / "common.nix").write_text("{ }\n")
    (root / "flake.nix").write_text(
        "{\n"
        "  outputs = { self }:\n"
        "    let\n"
        "      mocks = import ./mock-fleet.nix { };\n"
        "      fleet = (import ./fleet/flake.nix).outputs { self = fleet; inherit (mocks) nixpkgs deploy-rs sops-nix; };\n"
        "    in { inherit (fleet) deploy nixosConfigurations; };\n"
        "}\n"
    )
    return root


def nix_eval(flake: Path, attribute: str, apply: str, *, impure: bool, test_host: str | None):
    args = ["nix", *FLAKE_FEATURES, "eval", "--no-write-lock-file", "--json"]
    if impure:
        args.append("--impure")
    args += [f"path:{flake}#{attribute}", "--apply", apply]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=_environment(test_host))


def _evaluated(result: subprocess.CompletedProcess[str]):
    assert result.returncode == 0, f"nix eval failed:\n{result.stderr}"
    return json.loads(result.stdout)


# deploy-rs's --apply for `deploy .#<node>.<profile>` (src/cli.rs, the (Some, Some) branch).
def _node_profile_apply(node: str, profile: str) -> str:
    return (
        f'deploy: (deploy // {{ nodes = {{ "{node}" = deploy.nodes."{node}" // '
        f'{{ profiles = {{ inherit (deploy.nodes."{node}".profiles) "{profile}"; }}; }}; }}; }})'
    )


def test_fleet_main_deploy_command_never_sees_the_test_profile(mock_flake):
    """`deploy .` evaluates purely: the variable is invisible even when it is set."""
    deploy = _evaluated(nix_eval(mock_flake, "deploy", "deploy: deploy", impure=False, test_host="Beta"))
    assert sorted(deploy["nodes"]) == ["Alpha", "Beta"]
    assert {name: list(node["profiles"]) for name, node in deploy["nodes"].items()} == {
        "Alpha": ["system"],
        "Beta": ["system"],
    }


def test_fleet_test_branch_command_sees_only_the_test_profile(mock_flake):
    """`HOMELAB_DEPLOY_TEST_HOST=Beta deploy .#Beta.test -- --impure`."""
    result = nix_eval(mock_flake, "deploy", _node_profile_apply("Beta", "test"), impure=True, test_host="Beta")
    deploy = _evaluated(result)
    assert list(deploy["nodes"]) == ["Beta"]
    assert list(deploy["nodes"]["Beta"]["profiles"]) == ["test"]
    assert deploy["nodes"]["Beta"]["profiles"]["test"]["profilePath"] == "/nix/var/nix/profiles/homelab-test"


def test_fleet_test_profile_is_missing_without_impure(mock_flake):
    result = nix_eval(mock_flake, "deploy", _node_profile_apply("Beta", "test"), impure=False, test_host="Beta")
    assert result.returncode != 0
    assert "test" in result.stderr and "missing" in result.stderr, result.stderr


def test_fleet_impure_unknown_test_host_fails_with_the_host_list(mock_flake):
    result = nix_eval(mock_flake, "deploy.nodes", "builtins.attrNames", impure=True, test_host="Gamma")
    assert result.returncode != 0
    assert f'{TEST_HOST_VARIABLE}="Gamma" is not a deployable host' in result.stderr
    assert "Alpha, Beta" in result.stderr


def test_fleet_host_lists_for_ci(mock_flake):
    deployable = _evaluated(nix_eval(mock_flake, "deploy.nodes", "builtins.attrNames", impure=False, test_host=None))
    everything = _evaluated(nix_eval(mock_flake, "nixosConfigurations", "builtins.attrNames", impure=False, test_host=None))
    assert deployable == ["Alpha", "Beta"]
    assert everything == ["Alpha", "Beta", "Template"], "only folders under hosts/ are hosts"


def test_fleet_test_scripts_keep_the_return_closure_as_a_dependency():
    """The return closure must travel with the test closure (nix copy, signing): the scripts
    keep the derivation's string context, so the script files reference it."""
    expr = (
        'let d = derivation { name = "return-closure"; system = "x86_64-linux"; builder = "/bin/sh"; }; '
        f"s = import {json.dumps(str(REPO / 'lib' / 'test-branch-activation.nix'))} {{ }}; "
        "in map (script: builtins.attrNames (builtins.getContext script)) [ (s.activate d) (s.refuseBoot d) ]"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    contexts = json.loads(result.stdout)
    assert all(len(c) == 1 and c[0].endswith("-return-closure.drv") for c in contexts), contexts


# --- hosts: what the flake adds to every host folder ------------------------------------------


def test_fleet_host_builder_names_the_host_after_its_folder(tmp_path):
    _require("nix-instantiate")
    expr = (
        f"map (m: if builtins.isAttrs m then m else baseNameOf (toString m)) "
        f"(import {json.dumps(str(HOST_MODULES))} {{ hostsDir = {json.dumps(str(tmp_path))}; }} \"Gamma\")"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Gamma", "common.nix", {"networking": {"hostName": "Gamma"}}]


def test_fleet_every_host_gets_common_nix_and_its_folder_name(mock_flake):
    """The real flake.nix builds each host from lib/host-modules.nix: folder, common.nix, name."""
    # The twin addresses are listed by host only: the mocks' addresses lie outside the twins' VLAN,
    # which only a twin's evaluation refuses (tests/flake/test_flake_twins.py).
    apply = (
        "cs: builtins.mapAttrs (name: c: map (m: if builtins.isAttrs m then "
        "(if m ? homelab.twin then { twinAddressesOf = builtins.attrNames m.homelab.twin.addresses; } else m) "
        "else baseNameOf (toString m)) c.passedModules) cs"
    )
    modules = _evaluated(nix_eval(mock_flake, "nixosConfigurations", apply, impure=False, test_host=None))
    assert sorted(modules) == ["Alpha", "Beta", "Template"]
    for name, passed in modules.items():
        # The host's own modules first (lib/host-modules.nix), then sops-nix's module (the mock's
        # empty one), the facts generated from the whole fleet (lib/fleet-hosts.nix) and the twin.
        assert passed[:3] == [name, "common.nix", {"networking": {"hostName": name}}]
        assert passed[3] == {}
        assert list(passed[4]) == ["homelab"] and "scrapeTargets" in passed[4]["homelab"]["services"]["monitoring"]["prometheus"]
        # Then the twin module (twins/) and every host's twin address (lib/twin-addresses.nix).
        assert passed[5:] == ["twins", {"twinAddressesOf": ["Alpha", "Beta", "Template"]}]
