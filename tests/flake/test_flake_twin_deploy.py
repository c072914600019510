"""lib/twin-deploy.nix over the real hosts (lib/fleet-hosts.nix, evaluated by module-eval.nix
with nixpkgs' real lib and sops-nix's module, as test_flake_twins.py does): the twins as
deploy-rs nodes are the real deploy's nodes with each profile made from the twin's system
(the host's vmVariant), never the host's own. Mock activation functions record which
configuration each profile was made from. Also: the twins authorize the TEST ONLY deploy key of
the twins' deployer, and the hosts themselves never do. Needs NIXPKGS_LIB and SOPS_NIX."""
from __future__ import annotations

import json
import subprocess

from flake_modules_lib import HOSTS, REPO, evaluate_fleet, fleet_expr, nix_path

DEPLOY_NODES = nix_path(REPO / "lib" / "deploy-nodes.nix")
TWIN_DEPLOY = nix_path(REPO / "lib" / "twin-deploy.nix")
DEPLOYER_KEY = (REPO / "test" / "fleet" / "keys" / "twin-deploy-ed25519.pub").read_text().strip()

# activate.nixos records the configuration it was given: a twin has qemu-vm.nix's
# useBootLoader (set by twins/vm.nix), a host has no such option.
ACTIVATE = (
    "activate = system: { nixos = base: builtins.toJSON { host = base.config.networking.hostName; "
    "twin = base.config.virtualisation.useBootLoader or false; "
    "address = base.config.homelab.twin.address or null; }; "
    "custom = { __functor = self: base: script: \"custom\"; }; };"
)


def nodes(generator: str, test_host: str = "") -> dict:
    select = (
        f"let {ACTIVATE} deployNodes = import {DEPLOY_NODES} {{ inherit activate; testHost = {json.dumps(test_host)}; }}; "
        f"d = {generator}; in builtins.mapAttrs (_: n: n // {{ profiles = builtins.mapAttrs "
        "(_: p: if p ? profilePath then p else p // { path = builtins.fromJSON p.path; }) n.profiles; }) d.nodes"
    )
    return evaluate_fleet(select)


def twin_nodes(hosts: str = "null") -> dict:
    return nodes(f"import {TWIN_DEPLOY} {{ inherit deployNodes; hosts = {hosts}; }} fleet")


def test_twin_nodes_are_the_real_nodes_with_the_twins_systems() -> None:
    real = nodes("deployNodes fleet")
    twins = twin_nodes()
    assert sorted(twins) == sorted(real) and twins, "the same deployable hosts"
    for host, node in twins.items():
        path = node["profiles"]["system"]["path"]
        assert path["host"] == host and path["twin"] is True, f"{host}: profile not made from its twin: {path}"
        assert path["address"], f"{host}: the twin has its VLAN address"
        assert real[host]["profiles"]["system"]["path"]["twin"] is False, f"{host}: the real deploy got a twin"
        settings = {k: v for k, v in node.items() if k != "profiles"}
        real_settings = {k: v for k, v in real[host].items() if k != "profiles"}
        assert settings == real_settings, f"{host}: hostname, user, rollback settings as the real node's"


def test_a_subset_of_hosts_and_an_unknown_name() -> None:
    deployable = sorted(twin_nodes())
    chosen = deployable[:1]
    assert sorted(twin_nodes(json.dumps(chosen).replace(",", " "))) == chosen
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr",
         fleet_expr(f"let {ACTIVATE} deployNodes = import {DEPLOY_NODES} {{ inherit activate; }}; in "
                    f"builtins.attrNames (import {TWIN_DEPLOY} {{ inherit deployNodes; hosts = [ \"Nosuch\" ]; }} fleet).nodes")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no host named Nosuch" in result.stderr, result.stderr


def test_test_branch_deploy_of_a_twin() -> None:
    deployable = sorted(twin_nodes())
    host = deployable[0]
    test = nodes(f"import {TWIN_DEPLOY} {{ inherit deployNodes; }} fleet", test_host=host)
    assert list(test) == [host] and list(test[host]["profiles"]) == ["test"]


def test_twins_authorize_the_deployer_key_and_hosts_do_not() -> None:
    keys = evaluate_fleet(
        "builtins.mapAttrs (_: h: { deploy = h.config.homelab.users.deploy.enable; "
        "host = h.config.homelab.users.deploy.authorizedKeys; "
        "twin = h.config.virtualisation.vmVariant.homelab.users.deploy.authorizedKeys; }) fleet")
    assert sorted(keys) == HOSTS
    for host, k in keys.items():
        assert DEPLOYER_KEY not in k["host"], f"{host}: the host itself must never authorize the test key"
        if k["deploy"]:
            assert k["twin"] == k["host"] + [DEPLOYER_KEY], host
        else:
            assert k["twin"] == k["host"], host


def test_the_private_deploy_key_is_never_read_by_the_hosts_or_twins() -> None:
    vm = (REPO / "twins" / "vm.nix").read_text()
    assert "twin-deploy-ed25519.pub" in vm and "twin-deploy-ed25519}" not in vm
