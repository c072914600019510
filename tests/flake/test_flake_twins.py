"""The twin of every host (twins/, docs/twins.md), evaluated with nixpkgs' real lib, sops-nix's
real module and the NixOS stand-ins of module-eval.nix (qemu-vm.nix and test-instrumentation.nix
under nixos-stubs/): nothing is built. For every folder of hosts/, the host's own system is what
it is without the twin module, and its VM variants are the host extended by exactly the twin's
changes: the backdoor, the VM's file systems instead of the host's, systemd-boot on UEFI kept
and snapshot-able, the host's deploy address on the twins' VLAN, no internet substituter.
test_flake_twin_parts.py checks each part on hosts made for it (secrets, hardware, ACME).
Needs NIXPKGS_LIB and SOPS_NIX, like test_flake_modules.py."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from flake_modules_lib import HOSTS, evaluate_fleet, fleet_expr, nix_path

PROJECT = nix_path(Path(__file__).resolve().parent / "project-config.nix")
VARIANTS = ["vmVariant", "vmVariantWithBootLoader"]
VM_FILE_SYSTEMS = {
    "/": {"device": "/dev/disk/by-label/nixos", "fsType": "ext4", "autoResize": True},
    "/boot": {"device": "/dev/disk/by-label/ESP", "fsType": "vfat"},
}
# Where a twin differs from its host by design (docs/twins.md); everything else must be equal.
TWIN_CHANGES = {
    ("fileSystems",), ("swapDevices",), ("assertions",),
    ("boot", "kernelParams"), ("boot", "growPartition"), ("boot", "udev"), ("boot", "luks"),
    ("networking", "interfaces"), ("networking", "extraHosts"), ("networking", "usePredictableInterfaceNames"),
    ("networking", "defaultGateway"), ("networking", "nameservers"),
    ("services", "timesyncd"), ("nix", "settings", "substituters"),
    ("systemd", "services", "backdoor"), ("systemd", "services", "serial-getty@ttyS0"),
    ("systemd", "services", "serial-getty@hvc0"), ("users", "users", "root", "hashedPasswordFile"),
    # The twins' deployer's TEST ONLY key, added to the host's (test_flake_twin_deploy.py checks
    # it is exactly one key more).
    ("homelab", "users", "deploy", "authorizedKeys"), ("users", "users", "deploy", "openssh"),
}

# The facts of one twin that the checks below read; `t` is the twin, `h` its host, `vm` the
# host's system.build attribute that builds that variant's VM.
FACTS = """{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) t.assertions);
  backdoor = t.testing.backdoor or "<no option>";
  backdoorWantedBy = t.systemd.services.backdoor.wantedBy or "<no service>";
  fileSystems = t.fileSystems;
  swapDevices = t.swapDevices;
  luks = t.boot.initrd.luks.devices;
  boot = {
    inherit (t.virtualisation) useBootLoader useEFIBoot mountHostNixStore sharedDirectories;
    directBoot = t.virtualisation.directBoot.enable;
    systemdBoot = t.boot.loader.systemd-boot.enable;
    canTouchEfiVariables = t.boot.loader.efi.canTouchEfiVariables;
    firstDrive = (builtins.head t.virtualisation.qemu.drives).name;
    efiVars = builtins.filter (o: builtins.match ".*NIX_EFI_VARS.*" o != null) t.virtualisation.qemu.options;
  };
  targetHost = t.homelab.deploy.targetHost;
  address = t.homelab.twin.address or "<no option>";
  interfaces = t.networking.interfaces;
  extraHosts = t.networking.extraHosts;
  nicOptions = builtins.filter (o: builtins.match ".*twin-vlan.*" o != null) t.virtualisation.qemu.options;
  vlans = t.virtualisation.vlans;
  restrictNetwork = t.virtualisation.restrictNetwork;
  substituters = t.nix.settings.substituters;
  vmProgram = (vm.env.meta or vm.meta).mainProgram;
  vmScriptConverts = builtins.match ".*ndh-efi-vars-qcow2.*" (vm.script or "") != null;
}"""


def twin_facts(host: str, variant: str, *, twins: bool = True, safely: bool = False):
    facts = FACTS
    if safely:  # each fact on its own: without the twin module most of them do not evaluate
        facts = ("let f = " + FACTS + "; in builtins.mapAttrs (_: v: let r = builtins.tryEval "
                 "(builtins.deepSeq v v); in if r.success then v else \"<does not evaluate>\") f")
    vm = {"vmVariant": "vm", "vmVariantWithBootLoader": "vmWithBootLoader"}[variant]
    select = (f"let h = fleet.{host}.config; t = h.virtualisation.{variant}; vm = h.system.build.{vm}; in "
              f"builtins.unsafeDiscardStringContext (builtins.toJSON ({facts}))")
    return json.loads(evaluate_fleet(select, twins=twins))


def without(tree: dict, paths: set[tuple[str, ...]]) -> dict:
    """`tree` less each of `paths`, and less the attribute sets that removing them emptied."""
    tree = json.loads(json.dumps(tree))
    for path in paths:
        nodes = [tree]
        for key in path[:-1]:
            nodes.append(nodes[-1].get(key, {}))
        nodes[-1].pop(path[-1], None)
        for parent, key, node in reversed(list(zip(nodes, path, nodes[1:]))):
            if node == {}:
                parent.pop(key, None)
    return tree


@pytest.fixture(scope="module")
def fleet_projection():
    select = lambda config: f"builtins.mapAttrs (_: h: import {PROJECT} ({config})) fleet"  # noqa: E731
    return {
        "host": evaluate_fleet(select("h.config")),
        "baseline": evaluate_fleet(select("h.config"), twins=False),
        **{variant: evaluate_fleet(select(f"h.config.virtualisation.{variant}")) for variant in VARIANTS},
    }


@pytest.mark.parametrize("name", HOSTS)
def test_twin_leaves_the_host_s_own_system_unchanged(fleet_projection, name):
    assert fleet_projection["host"][name] == fleet_projection["baseline"][name]
    assert "backdoor" not in fleet_projection["host"][name]["systemd"]["services"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", HOSTS)
def test_twin_keeps_everything_else_of_its_host(fleet_projection, name, variant):
    """Services, users (the deploy user), firewall, sshd, sudo, Nix settings, monitoring, secrets'
    names and modes: all the host's own."""
    host, twin = fleet_projection["host"][name], fleet_projection[variant][name]
    assert without(twin, TWIN_CHANGES) == without(host, TWIN_CHANGES)
    # The twin adds to the host's assertions; it drops none.
    assert all(assertion in twin["assertions"] for assertion in host["assertions"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", HOSTS)
def test_twin_is_the_host_as_a_snapshot_able_vm(name, variant):
    host_config = evaluate_fleet(f"let c = fleet.{name}.config; in {{ inherit (c.boot.loader.efi) canTouchEfiVariables; "
                                 f"targetHost = c.homelab.deploy.targetHost; }}")
    facts = twin_facts(name, variant)
    assert facts["failedAssertions"] == []
    # The backdoor the harness drives.
    assert facts["backdoor"] is True and facts["backdoorWantedBy"] == ["multi-user.target"]
    # The VM's disks instead of the host's hardware.
    assert facts["fileSystems"] == VM_FILE_SYSTEMS
    assert facts["swapDevices"] == [] and facts["luks"] == {}
    # systemd-boot on UEFI kept, the store on the twin's disk, snapshot-able drives.
    assert facts["boot"] == {
        "useBootLoader": True, "useEFIBoot": True, "mountHostNixStore": False, "sharedDirectories": {},
        "directBoot": False, "systemdBoot": True, "canTouchEfiVariables": host_config["canTouchEfiVariables"],
        "firstDrive": "root",
        "efiVars": ["-drive if=pflash,format=qcow2,unit=1,readonly=off,file=$NIX_EFI_VARS"],
    }
    # The host's deploy address, on the twins' VLAN NIC, and reachable by the host's name.
    assert facts["targetHost"] == host_config["targetHost"]
    address = facts["address"]
    assert facts["interfaces"] == {"eth1": {"ipv4": {"addresses": [{"address": address, "prefixLength": 24}]}}}
    if _is_ipv4(facts["targetHost"]):
        assert address == facts["targetHost"]
    assert f"{address} {name}" in facts["extraHosts"].splitlines()
    assert {line.split()[1] for line in facts["extraHosts"].splitlines()} == set(HOSTS)
    mac = "52:54:00:13:01:" + format(int(address.split(".")[-1]), "02x")
    assert facts["nicOptions"][0] == f"-device virtio-net-pci,netdev=twin-vlan1,mac={mac}"
    assert facts["vlans"] == [], "the VLAN NIC is the twin's own, not the test framework's"
    # Nothing on the internet: a restricted user network, no cache.nixos.org.
    assert facts["restrictNetwork"] is True and facts["substituters"] == []
    # `nix build .#nixosConfigurations.<Host>.config.system.build.vm` (vmWithBootLoader for the
    # other variant) is this twin, and its start script turns the UEFI variable store into qcow2
    # first (snapshottable.nix).
    assert facts["vmProgram"] == f"run-{name}-vm" and facts["vmScriptConverts"] is True


@pytest.mark.parametrize("name", ["Ingress", "Production"])
def test_twin_checks_fail_without_the_twin_module(name):
    """The checks above are about the twin module: without it, NixOS's plain VM variant fails
    every one of them."""
    twin = twin_facts(name, "vmVariant")
    plain = twin_facts(name, "vmVariant", twins=False, safely=True)
    for fact in ["backdoor", "backdoorWantedBy", "fileSystems", "boot", "address", "interfaces",
                 "extraHosts", "nicOptions", "vlans", "restrictNetwork", "substituters", "vmScriptConverts"]:
        assert plain[fact] != twin[fact], fact


def test_twin_addresses_of_the_fleet():
    """Real addresses kept; a host known by name only gets a stand-in that its name resolves to."""
    addresses = evaluate_fleet("builtins.mapAttrs (_: h: { inherit (h.config.homelab.twin) address prefixLength; "
                               "standIn = h.config.homelab.twin.addresses.${h.config.networking.hostName}.standIn; }) fleet")
    assert addresses["Ingress"] == {"address": "192.168.0.10", "prefixLength": 24, "standIn": False}
    assert addresses["Development"] == {"address": "192.168.0.91", "prefixLength": 24, "standIn": False}
    named = sorted(h for h in HOSTS if h not in ("Ingress", "Development"))
    assert [addresses[h]["address"] for h in named] == [f"192.168.0.{250 - i}" for i in range(len(named))]
    assert all(addresses[h]["standIn"] for h in named)
    assert len({a["address"] for a in addresses.values()}) == len(HOSTS)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def test_fleet_expression_without_twins_is_the_flake_s_modules_less_the_twin():
    # fleet_expr(twins=False) passes twins = null, so no host has homelab.twin at all.
    assert "twins = null" in fleet_expr("fleet", twins=False) and "twins" not in fleet_expr("fleet")
