"""twins/deployer.nix, the twins' deployer, evaluated with nixpkgs' real lib over module-eval.nix's
NixOS stand-ins (qemu-vm.nix, test-instrumentation.nix under nixos-stubs/), fed the real fleet's
twin addresses as flake.nix feeds it; its ACME stand-in (twins/pebble.nix), on when a twin
requests certificates, also through flake.nix's own twinDeployer: nothing is built or booted.
Needs NIXPKGS_LIB and SOPS_NIX."""
from __future__ import annotations

import json
import subprocess

from flake_modules_lib import HOSTS, MODULE_EVAL, REPO, evaluate_fleet, fleet_expr, inputs, nix_path

DEPLOYER = nix_path(REPO / "twins" / "deployer.nix")
ADDRESSES = nix_path(REPO / "lib" / "twin-addresses.nix")
TWIN_FACTS = nix_path(REPO / "lib" / "twin-facts.nix")
# flake.nix's twinDeployer sets `acme.enable` so, from the fleet's twinFacts (the flake's own line
# is evaluated by test_the_flake_turns_the_stand_in_on_from_the_hosts_twin_facts below).
FLAKE_ACME_ENABLE = f"builtins.any (host: host.acme) (builtins.attrValues (import {TWIN_FACTS} fleet))"
# Options the module sets that module-eval.nix's stand-in of NixOS does not declare.
EXTRA_OPTIONS = ("{ lib, ... }: { options.environment.systemPackages = lib.mkOption "
                 "{ type = lib.types.listOf lib.types.raw; default = [ ]; }; }")


def deployer(select: str, address: str = "192.168.0.2", *, fleet_module: str = "{ }"):
    """`select` over the deployer (`d`, its config `c`) fed as flake.nix feeds it from the fleet
    (each host with `fleet_module` added): the twins' addresses, and the ACME stand-in on when a
    twin's facts say it requests certificates (flake.nix's `acme.enable` expression)."""
    expr = fleet_expr(
        f"let d = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; modules = [ {DEPLOYER} ({EXTRA_OPTIONS}) "
        f"{{ homelab.twinDeployer = {{ address = {json.dumps(address)}; "
        f"twinAddresses = import {ADDRESSES} {{ }} fleet; deployRs = {{ type = \"derivation\"; name = \"deploy-rs\"; "
        f"outPath = \"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-deploy-rs\"; }}; "
        f"acme.enable = {FLAKE_ACME_ENABLE}; }}; }} ]; }}; c = d.config; in "
        f"builtins.unsafeDiscardStringContext (builtins.toJSON ({select}))", extra_module=fleet_module)
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


# Ingress requests a certificate, as a host with nginx's enableACME would.
INGRESS_ACME = """{ config, lib, ... }: lib.mkIf (config.networking.hostName == "Ingress") {
  security.acme = { acceptTerms = true; defaults.email = "hostmaster@example.org"; };
  security.acme.certs."ingress.example.org".webroot = "/var/lib/acme/acme-challenge";
}"""
PEBBLE = """{
  service = c.systemd.services.twin-acme-pebble or null;
  settings = builtins.fromJSON (builtins.unsafeDiscardStringContext c.homelab.twinDeployer.acme.configFile.text);
  ports = c.networking.firewall.allowedTCPPorts;
  failed = d.failedAssertions;
  address = c.homelab.twinDeployer.address;
}"""


def test_no_twin_requests_certificates_so_the_deployer_runs_no_acme_server() -> None:
    facts = deployer(PEBBLE)
    assert facts["service"] is None and 14000 not in facts["ports"] and facts["failed"] == []


def test_a_twin_that_requests_certificates_brings_the_stand_in_up_on_the_deployer() -> None:
    facts = deployer(PEBBLE, fleet_module=INGRESS_ACME)
    assert facts["failed"] == []
    service = facts["service"]
    assert service["wantedBy"] == ["multi-user.target"]
    assert service["environment"] == {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1"}
    command = service["serviceConfig"]["ExecStart"].split()
    assert command[0] == "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-pebble-2.6.0/bin/pebble"
    assert command[1:] == ["-config", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-twin-acme-pebble.json"]
    assert service["serviceConfig"]["DynamicUser"] is True
    settings = facts["settings"]["pebble"]
    # Its ACME API on every address at port 14000, open in the firewall, with the TEST ONLY
    # certificate and key (test_flake_twin_acme_certs.py checks them); no management API.
    assert settings["listenAddress"] == "0.0.0.0:14000" and 14000 in facts["ports"]
    assert settings["certificate"].endswith("-twin-acme-test-server.pem")
    assert settings["privateKey"].endswith("-twin-acme-test-server.key")
    assert settings["managementListenAddress"] == "" and settings["ocspResponderURL"] == ""
    assert settings["externalAccountBindingRequired"] is False
    assert sorted(settings) == sorted(["listenAddress", "managementListenAddress", "certificate", "privateKey",
                                       "httpPort", "tlsPort", "ocspResponderURL", "externalAccountBindingRequired"])


def test_twins_find_the_stand_in_at_the_deployer_s_address() -> None:
    """The twin's /etc/hosts line for acme.twins names the address the deployer answers on."""
    twin_hosts = evaluate_fleet_with(INGRESS_ACME, "fleet.Ingress.config.virtualisation.vmVariant.networking.extraHosts")
    line = next(line for line in twin_hosts.splitlines() if line.endswith(" acme.twins"))
    facts = deployer("{ eth1 = c.networking.interfaces.eth1.ipv4.addresses; }", fleet_module=INGRESS_ACME)
    assert line == f"{facts['eth1'][0]['address']} acme.twins"


def test_the_stand_in_refuses_a_deployer_moved_away_from_where_twins_look() -> None:
    failed = deployer("d.failedAssertions", address="192.168.0.3", fleet_module=INGRESS_ACME)
    assert any("twins resolve acme.twins to 192.168.0.2" in message for message in failed), failed
    # Without the stand-in the deployer may move.
    assert deployer("d.failedAssertions", address="192.168.0.3") == []


def evaluate_fleet_with(fleet_module: str, select: str):
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr",
                             fleet_expr(select, extra_module=fleet_module)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def flake_deployer(select: str, fleet_module: str = "{ }"):
    """`select` over flake.nix's own `twinDeployer` (`c`, its config): the flake's outputs with
    nixpkgs' lib whose nixosSystem is module-eval.nix (every host and the deployer, each with
    `fleet_module`), so the flake's wiring of the deployer from twinFacts is what is evaluated."""
    expr = (
        f"let {inputs()}"
        f"nixosSystem = {{ modules }}: import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; "
        f"modules = modules ++ [ ({EXTRA_OPTIONS}) ({fleet_module}) ]; }}; "
        "nixpkgs = { lib = lib // { inherit nixosSystem; }; legacyPackages.x86_64-linux = { }; }; "
        f"flake = import {nix_path(REPO / 'flake.nix')}; "
        "out = flake.outputs { self = out; inherit nixpkgs; deploy-rs = { }; sops-nix.nixosModules.sops = { }; }; "
        f"c = out.twinDeployer.config; in builtins.unsafeDiscardStringContext (builtins.toJSON ({select}))"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(json.loads(result.stdout))


def test_the_flake_turns_the_stand_in_on_from_the_hosts_twin_facts() -> None:
    select = "{ enable = c.homelab.twinDeployer.acme.enable; pebble = c.systemd.services ? twin-acme-pebble; }"
    assert flake_deployer(select) == {"enable": False, "pebble": False}
    assert flake_deployer(select, INGRESS_ACME) == {"enable": True, "pebble": True}
