"""The twin fleet spec (harness/twins/fleet_spec.py) built from facts that lib/twin-facts.nix
evaluates over the real hosts (lib/fleet-hosts.nix with module-eval.nix's NixOS stand-ins, as
tests/flake does; nixpkgs' real lib, sops-nix's module): nodes, addresses, VLAN, the cache's twin,
the deployer; the --twins list's checks. Needs NIXPKGS_LIB and SOPS_NIX (ci/with-nix-inputs)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.specs import FleetSpec
from harness.twins import fleet_spec
from harness.twins.fleet_spec import DEPLOYER, TwinFacts, TwinImage, TwinsError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "flake"))
from flake_modules_lib import fleet_expr, nix_path  # noqa: E402

HOSTS = sorted(p.name for p in (REPO / "hosts").iterdir() if p.is_dir())


def evaluate_facts(extra_module: str = "{ }") -> dict[str, TwinFacts]:
    expr = fleet_expr(f"import {nix_path(REPO / 'lib' / 'twin-facts.nix')} fleet", extra_module=extra_module)
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return fleet_spec.facts_from_json(json.loads(done.stdout))


@pytest.fixture(scope="module")
def facts() -> dict[str, TwinFacts]:
    return evaluate_facts()


def test_facts_are_the_hosts_twin_addresses(facts) -> None:
    assert sorted(facts) == HOSTS
    assert facts["Development"].address == "192.168.0.91" and not facts["Development"].stand_in
    assert facts["Production"].address == "192.168.0.249" and facts["Production"].stand_in
    assert facts["Production"].target_host == "Production"
    assert all(f.memory_mib == 2048 for f in facts.values())
    assert not any(f.cache for f in facts.values()), "no host serves the cache today"
    assert all(f.cache_url is None and f.cache_public_key_file is None for f in facts.values())
    assert facts["Development"].deploy_trust == "trusted-user"
    assert not any(f.acme for f in facts.values()), "no host requests ACME certificates today"


# Harmonia on Ingress, as an operator would enable it (docs/fleet.md, "The binary cache").
INGRESS_CACHE = """{ config, lib, ... }: lib.mkIf (config.networking.hostName == "Ingress") {
  homelab.services.harmonia = { enable = true; openFirewall = true; port = 5001; };
}"""


def test_a_cache_host_s_facts_say_where_its_twin_serves_and_its_key() -> None:
    facts = evaluate_facts(INGRESS_CACHE)
    ingress = facts["Ingress"]
    assert ingress.cache and ingress.cache_url == f"http://{ingress.address}:5001"
    assert ingress.cache_public_key_file == "/var/lib/homelab-harmonia/signing-key.pub"
    assert [h for h, f in facts.items() if f.cache] == ["Ingress"]


def test_behind_the_nginx_front_the_cache_is_its_https_name_and_a_key_not_generated_is_none() -> None:
    front = INGRESS_CACHE.replace("port = 5001;", 'generateKey = false; nginx = { enable = true; serverName = "cache.lan"; };')
    ingress = evaluate_facts(front)["Ingress"]
    assert ingress.cache_url == "https://cache.lan" and ingress.cache_public_key_file is None


def test_a_host_that_requests_certificates_says_so_in_its_facts() -> None:
    """twinFacts' `acme` is what flake.nix turns the deployer's ACME stand-in on with."""
    facts = evaluate_facts("""{ config, lib, ... }: lib.mkIf (config.networking.hostName == "Niko") {
      security.acme = { acceptTerms = true; defaults.email = "hostmaster@example.org"; };
      security.acme.certs."niko.example.org".webroot = "/var/lib/acme/acme-challenge";
    }""")
    assert [h for h, f in facts.items() if f.acme] == ["Niko"]


def test_facts_without_acme_are_refused_naming_it() -> None:
    data = {"Niko": {"address": "192.168.0.250", "standIn": True, "deployable": True, "cache": False,
                     "memoryMiB": 2048, "targetHost": "Niko", "sshUser": "deploy", "confirmTimeout": 30,
                     "cacheUrl": None, "cachePublicKeyFile": None, "deployTrust": "trusted-user"}}
    with pytest.raises(TwinsError, match="KeyError.*acme"):
        fleet_spec.facts_from_json(data)
    assert fleet_spec.facts_from_json({"Niko": {**data["Niko"], "acme": True}})["Niko"].acme is True


def test_spec_of_two_twins_and_the_deployer(facts) -> None:
    spec = fleet_spec.twin_spec(facts, ["Development", "Production"], flake="/fleet")
    assert isinstance(spec, FleetSpec) and sorted(spec.nodes) == ["Development", "Production", DEPLOYER]
    assert all(node.vlans == (1,) for node in spec.nodes.values())
    assert spec.nodes["Development"].allow_reboot and not spec.nodes[DEPLOYER].allow_reboot
    assert spec.nodes[DEPLOYER].forward_ports == (22,)
    assert spec.image == TwinImage(flake="/fleet", hosts=("Development", "Production"))
    assert spec.image.installable("Production") == "/fleet#nixosConfigurations.Production.config.system.build.vm"
    assert spec.image.installable(DEPLOYER) == "/fleet#twinDeployer.config.system.build.vm"


def test_the_cache_host_s_twin_comes_along(facts) -> None:
    with_cache = dict(facts, Ingress=TwinFacts(**{**facts["Ingress"].__dict__, "cache": True}))
    spec = fleet_spec.twin_spec(with_cache, ["Development"], flake="/fleet")
    assert sorted(spec.nodes) == ["Development", "Ingress", DEPLOYER]
    assert spec.image.hosts == ("Development", "Ingress")


def test_twins_list_is_checked_against_hosts_folders() -> None:
    known = fleet_spec.host_folders(REPO)
    assert known == HOSTS
    assert fleet_spec.parse_twins("Development,Production", known) == ["Development", "Production"]
    with pytest.raises(TwinsError, match=r"no host named development \(did you mean Development\?\), Nosuch"):
        fleet_spec.parse_twins("development,Nosuch", known)
    with pytest.raises(TwinsError, match="named twice"):
        fleet_spec.parse_twins("Niko,Niko", known)
    for bad in ("", "Niko,", ","):
        with pytest.raises(TwinsError, match="separated by commas"):
            fleet_spec.parse_twins(bad, known)


def test_shared_addresses_are_refused(facts) -> None:
    clash = dict(facts, Niko=TwinFacts(**{**facts["Niko"].__dict__, "address": facts["Development"].address}))
    with pytest.raises(TwinsError, match="share an address"):
        fleet_spec.twin_spec(clash, ["Development", "Niko"], flake="/fleet")
