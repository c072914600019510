"""twins/deployer.nix, the twins' deployer, evaluated with nixpkgs' real lib over module-eval.nix's
NixOS stand-ins (qemu-vm.nix, test-instrumentation.nix under nixos-stubs/), fed the real fleet's
twin addresses as flake.nix feeds it: nothing is built or booted. Needs NIXPKGS_LIB and SOPS_NIX."""
from __future__ import annotations

import json
import subprocess

from flake_modules_lib import HOSTS, MODULE_EVAL, REPO, evaluate_fleet, fleet_expr, nix_path

DEPLOYER = nix_path(REPO / "twins" / "deployer.nix")
ADDRESSES = nix_path(REPO / "lib" / "twin-addresses.nix")
# Options the module sets that module-eval.nix's stand-in of NixOS does not declare.
EXTRA_OPTIONS = ("{ lib, ... }: { options.environment.systemPackages = lib.mkOption "
                 "{ type = lib.types.listOf lib.types.raw; default = [ ]; }; }")


def deployer(select: str, address: str = "192.168.0.2"):
    expr = fleet_expr(
        f"let d = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; modules = [ {DEPLOYER} ({EXTRA_OPTIONS}) "
        f"{{ homelab.twinDeployer = {{ address = {json.dumps(address)}; "
        f"twinAddresses = import {ADDRESSES} {{ }} fleet; deployRs = {{ type = \"derivation\"; name = \"deploy-rs\"; "
        f"outPath = \"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-deploy-rs\"; }}; }}; }} ]; }}; c = d.config; in "
        f"builtins.unsafeDiscardStringContext (builtins.toJSON ({select}))")
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(json.loads(result.stdout))


def test_deployer_names_every_twin_at_its_twin_address() -> None:
    twins = evaluate_fleet("builtins.mapAttrs (_: h: h.config.virtualisation.vmVariant.homelab.twin.address) fleet")
    facts = deployer("{ hosts = c.networking.extraHosts; failed = d.failedAssertions; name = c.networking.hostName; }")
    assert facts["failed"] == [] and facts["name"] == "deployer"
    lines = {line for line in facts["hosts"].splitlines() if line}
    assert lines == {f"{address} {host}" for host, address in twins.items()}
    assert sorted(twins) == HOSTS


def test_deployer_is_on_the_vlan_offline_with_the_test_key() -> None:
    facts = deployer(
        "{ eth1 = c.networking.interfaces.eth1.ipv4.addresses; nic = c.virtualisation.qemu.options; "
        "subs = c.nix.settings.substituters; restrict = c.virtualisation.restrictNetwork; "
        "key = c.system.activationScripts.ndh-twin-deploy-key; vlans = c.virtualisation.vlans; "
        "backdoor = c.testing.backdoor; packages = map (p: p.name) c.environment.systemPackages; "
        "rootKeys = c.users.users.root.openssh.authorizedKeys.keys; sshd = c.services.openssh.enable; }")
    assert facts["eth1"] == [{"address": "192.168.0.2", "prefixLength": 24}]
    assert any("QEMU_VDE_SOCKET_1" in option for option in facts["nic"]) and facts["vlans"] == []
    assert facts["subs"] == [] and facts["restrict"] is True and facts["backdoor"] is True
    assert "twin-deploy-ed25519" in facts["key"] and "/root/.ssh/id_ed25519" in facts["key"]
    assert facts["packages"] == ["deploy-rs"]
    public = (REPO / "test" / "fleet" / "keys" / "twin-deploy-ed25519.pub").read_text().strip()
    assert facts["rootKeys"] == [public] and facts["sshd"] is True


def test_deployer_refuses_a_twin_s_address() -> None:
    taken = evaluate_fleet("fleet.Development.config.virtualisation.vmVariant.homelab.twin.address")
    failed = deployer("d.failedAssertions", address=taken)
    assert any("is a twin's address" in message for message in failed), failed
