"""test/vm-test.nix and test/fleet, evaluated here with builtins only (no nixpkgs): the test's
nodes, the variants, the deploy nodes test/fleet/outputs.nix generates with lib/deploy-nodes.nix,
and the deployer's generated flake.nix."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from nixos_testlib import REPO
from support import require
from support.upstream import nixpkgs_lib

FLEET = REPO / "test" / "fleet"
ISSUE_VARIANTS = {"v1", "v2", "cut-ssh", "failing-activation", "new-initrd", "seed-deploy-user"}


def nix_eval(expr: str):
    require("nix-instantiate")
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def path(p: Path) -> str:
    return f"(/. + {json.dumps(str(p))})"


# Nodes shaped like the test framework's: each target exposes homelabTest.variants, each variant
# an evaluation with the `config` attributes lib/deploy-nodes.nix and deploy-rs read.
MOCK_NODES = f"""
let
  variantNames = builtins.attrNames (import {path(FLEET / "variants")});
  evalFor = node: variant: {{
    config = {{
      networking.hostName = node;
      nixpkgs.hostPlatform.system = "x86_64-linux";
      system.build.toplevel = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-${{node}}-${{variant}}";
      homelab.users.deploy.enable = true;
      homelab.deploy = {{
        targetHost = node; sshUser = "deploy"; sshOpts = [ ]; magicRollback = true;
        autoRollback = true; confirmTimeout = 30; activationTimeout = 120; tempPath = "/tmp";
        fastConnection = false;
      }};
    }};
  }};
  node = name: {{ homelabTest.variants = builtins.listToAttrs (map (v: {{ name = v; value = evalFor name v; }}) variantNames); }};
  activate = system: {{
    nixos = base: "activatable-nixos:${{base.config.system.build.toplevel}}";
    custom = {{ __functor = self: base: script: "activatable-custom:${{base}}"; }};
  }};
in {{ nodes = {{ target = node "target"; target2 = node "target2"; }}; inherit activate variantNames; }}
"""


def outputs(test_host: str = ""):
    return nix_eval(
        f"let m = {MOCK_NODES}; o = import {path(FLEET / 'outputs.nix')} "
        f"{{ inherit (m) nodes activate; testHost = {json.dumps(test_host)}; }}; in "
        "{ configs = builtins.attrNames o.nixosConfigurations; deploy = o.deploy; variants = m.variantNames; }"
    )


def test_the_variants_the_issue_asks_for_exist():
    variants = nix_eval(f"builtins.attrNames (import {path(FLEET / 'variants')})")
    assert ISSUE_VARIANTS <= set(variants)
    for module in nix_eval(f"map toString (builtins.attrValues (import {path(FLEET / 'variants')}))"):
        assert Path(module).is_file(), module


def test_every_variant_of_every_target_is_a_deploy_node():
    out = outputs()
    expected = {f"{node}-{variant}" for node in ("target", "target2") for variant in out["variants"]}
    assert set(out["configs"]) == expected
    assert set(out["deploy"]["nodes"]) == expected
    for name, node in out["deploy"]["nodes"].items():
        assert node["hostname"] == ("target2" if name.startswith("target2-") else "target")
        assert list(node["profiles"]) == ["system"], "the main deploy sees only system profiles"
        assert node["profiles"]["system"]["path"].startswith("activatable-nixos:")
        assert node["sshUser"] == "deploy" and node["user"] == "root"


def test_deploy_node_names_force_no_variant_and_a_deploy_evaluates_one():
    """deploy-rs lists `deploy.nodes` to find the node it deploys; that must not evaluate every
    variant (each a full NixOS evaluation, in the deployer's memory)."""
    only = "target-v2"
    expr = (
        f"let m = {MOCK_NODES}; "
        # Every variant but one throws when its configuration is read.
        "nodes = builtins.mapAttrs (node: n: { homelabTest.variants = builtins.mapAttrs (variant: v: "
        f"if \"${{node}}-${{variant}}\" == \"{only}\" then v else {{ config = throw \"forced ${{node}}-${{variant}}\"; }}) "
        "n.homelabTest.variants; }) m.nodes; "
        f"o = import {path(FLEET / 'outputs.nix')} {{ inherit nodes; inherit (m) activate; }}; in "
        f"{{ names = builtins.attrNames o.deploy.nodes; node = o.deploy.nodes.{json.dumps(only)}; }}"
    )
    out = nix_eval(expr)
    assert len(out["names"]) == 2 * len(nix_eval(f"builtins.attrNames (import {path(FLEET / 'variants')})"))
    assert out["node"]["hostname"] == "target"
    assert list(out["node"]["profiles"]) == ["system"]


def test_a_test_branch_deploy_has_only_the_requested_node():
    out = outputs("target-v2")
    assert list(out["deploy"]["nodes"]) == ["target-v2"]
    node = out["deploy"]["nodes"]["target-v2"]
    assert list(node["profiles"]) == ["test"]
    assert node["profiles"]["test"]["profilePath"] == "/nix/var/nix/profiles/homelab-test"


MOCK_INPUTS = """
let
  nixpkgs = { outPath = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-source"; inputs = { }; };
  deploy-rs = {
    outPath = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-source";
    inputs = {
      inherit nixpkgs;
      utils = {
        outPath = "/nix/store/cccccccccccccccccccccccccccccccc-source";
        inputs.systems = { outPath = "/nix/store/dddddddddddddddddddddddddddddddd-source"; inputs = { }; };
      };
      flake-compat = { outPath = "/nix/store/ffffffffffffffffffffffffffffffff-source"; };
    };
  };
  sops-nix = {
    outPath = "/nix/store/gggggggggggggggggggggggggggggggg-source";
    inputs = { inherit nixpkgs; };
  };
in { inherit nixpkgs deploy-rs sops-nix; }
"""


def test_the_deployer_flake_pins_every_input_to_the_host_s_store_paths(tmp_path):
    generated = nix_eval(f"import {path(FLEET / 'flake-text.nix')} ({MOCK_INPUTS})")
    flake = tmp_path / "flake.nix"
    flake.write_text(generated["text"])
    parsed = subprocess.run(["nix-instantiate", "--parse", str(flake)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr

    inputs = nix_eval(f"(import {path(flake)}).inputs")
    assert inputs["nixpkgs"] == {"url": "path:/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-source"}
    deploy_rs = inputs["deploy-rs"]
    assert deploy_rs["url"] == "path:/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-source"
    assert deploy_rs["inputs"] == {
        "nixpkgs": {"follows": "nixpkgs"},
        "utils": {"follows": "deploy-rs_utils"},
        "flake-compat": {"follows": "deploy-rs_flake-compat"},
    }
    assert inputs["deploy-rs_flake-compat"]["flake"] is False
    assert inputs["deploy-rs_utils"]["inputs"] == {"systems": {"follows": "deploy-rs_utils_systems"}}
    assert inputs["deploy-rs_utils_systems"]["url"].endswith("dddddddddddddddddddddddddddddddd-source")
    assert inputs["sops-nix"] == {
        "url": "path:/nix/store/gggggggggggggggggggggggggggggggg-source",
        "inputs": {"nixpkgs": {"follows": "nixpkgs"}},
    }
    assert len(generated["inputPaths"]) == 6 and len(set(generated["inputPaths"])) == 6
    outputs = generated["text"][generated["text"].index("outputs ="):]
    assert "inherit nixpkgs deploy-rs sops-nix;" in outputs


def test_vm_test_has_the_issue_s_nodes_and_a_smoke_script():
    test = nix_eval(
        f"let t = import {path(REPO / 'test' / 'vm-test.nix')} {{ nixpkgs = null; deploy-rs = null; sops-nix = null; }} {{ }}; in "
        "{ inherit (t) name testScript; nodes = builtins.attrNames t.nodes; "
        "specialArgs = builtins.attrNames t.node.specialArgs; }"
    )
    assert test["nodes"] == ["cache", "deployer", "target", "target2"]
    assert test["specialArgs"] == ["deploy-rs", "nixpkgs", "sops-nix"]
    script = test["testScript"]
    assert script.index('deploy("target-v1")') < script.index('deploy("target-v2")')


def test_the_parse_test_covers_test_definitions():
    spec = importlib.util.spec_from_file_location("fleet_parse", REPO / "tests" / "flake" / "test_flake_parse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {str(p.relative_to(REPO)) for p in module.nix_files()}
    for expected in ("test/vm-test.nix", "test/fleet/default.nix", "test/fleet/nodes/target.nix",
                     "test/fleet/variants/cut-ssh.nix", "test/fleet/flake-text.nix"):
        assert expected in found


def test_the_deployer_s_fleet_source_leaves_out_the_private_test_host_key():
    """The deployer stands for CI: the targets' private host key must not reach its store."""
    lib = nixpkgs_lib()
    expr = (
        f"let source = (import {path(FLEET / 'flake-source.nix')} {{ lib = import {path(Path(lib))}; "
        "pkgs = null; nixpkgs = null; deploy-rs = null; sops-nix = null; }).source; in "
        "{ keys = builtins.attrNames (builtins.readDir (source + \"/test/fleet/keys\")); "
        "top = builtins.attrNames (builtins.readDir source); }"
    )
    # --read-write-mode: builtins.path really copies the filtered tree, so it can be listed.
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", "--expr", expr],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["top"] == ["lib", "modules", "test", "users"]
    assert "target-host-ed25519.pub" in listed["keys"]
    assert "target-host-ed25519" not in listed["keys"]


def test_the_nixos_test_and_the_scenarios_read_one_list_of_facts():
    """test/fleet/facts.json is the one source: the Nix test's nodes come from it, and so do the
    scenarios' FleetSpec, cache URL, fleet directory and ssh options."""
    require("nix-instantiate")
    facts = json.loads((REPO / "test" / "fleet" / "facts.json").read_text())
    expr = (f"let t = import {REPO / 'test' / 'vm-test.nix'} {{ nixpkgs = {{}}; deploy-rs = {{}}; sops-nix = {{}}; }} {{}}; "
            "in builtins.mapAttrs (name: path: baseNameOf (toString path)) t.nodes")
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {name: node["module"] for name, node in facts["nodes"].items()}

    sys.path.insert(0, str(REPO / "scenarios"))
    try:
        import scenario_fleet
    finally:
        sys.path.remove(str(REPO / "scenarios"))
    spec = scenario_fleet.NIXOS_FLEET
    assert {name: (list(n.vlans), n.allow_reboot) for name, n in spec.nodes.items()} == {
        name: (node["vlans"], node["allowReboot"]) for name, node in facts["nodes"].items()}
    assert scenario_fleet.CACHE_URL == facts["cacheUrl"] and scenario_fleet.FLEET_DIR == facts["fleetDir"]
    assert scenario_fleet.SSH_OPTIONS.startswith(" ".join(facts["sshOptions"]))
    for nix_file in ("nodes/target.nix", "nodes/deployer.nix", "outputs.nix"):
        text = (REPO / "test" / "fleet" / nix_file).read_text()
        assert "facts.json" in text, f"test/fleet/{nix_file} reads the facts"
        assert facts["cacheUrl"] not in text and facts["fleetDir"] not in text, f"test/fleet/{nix_file} repeats a fact"


def test_the_deploy_user_scenario_names_a_canary_the_target_s_sudo_rule_allows():
    """The canary's directory has one source, facts.json: the target node sets its tempPath from
    it, and the scenarios' canary (scenario_fleet.CANARY) lies in it and matches the sudo rule
    generated from it."""
    from test_nixos_target_module import evaluate  # nixpkgs' lib: skips, naming it, when unset

    facts = json.loads((FLEET / "facts.json").read_text())
    target = evaluate("""{
      tempPath = config.homelab.deploy.tempPath;
      commands = map (c: c.command) (builtins.concatMap (r: r.commands) config.security.sudo.extraRules);
    }""")
    assert target["tempPath"] == facts["deployTempPath"]
    sys.path.insert(0, str(REPO / "scenarios"))
    try:
        import scenario_fleet
    finally:
        sys.path.remove(str(REPO / "scenarios"))
    assert scenario_fleet.CANARY.startswith(facts["deployTempPath"] + "/deploy-rs-canary-")
    assert "deploy-rs-canary-" not in (REPO / "scenarios" / "test_deploy_user.py").read_text(), "one canary: CANARY"
    rules = [command for command in target["commands"] if "deploy-rs-canary-" in command]
    rm = f"/run/current-system/sw/bin/rm {scenario_fleet.CANARY}"
    assert any(fnmatch.fnmatchcase(rm, rule) for rule in rules), rules
