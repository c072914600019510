"""homelab modules and the real hosts, evaluated with nixpkgs' lib (option types, merging,
assertions, the generated sudo rules) through tests/flake/module-eval.nix (helpers:
flake_modules_lib.py). Harmonia and the cache clients: test_flake_harmonia.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flake_modules_lib import (CANARY, DEPLOY_HOST, HOMELAB, HOSTS, MOCKS, REPO, evaluate,
                               evaluate_fleet, host, nix_path, run)


# --- the real hosts --------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTS)
def test_fleet_host_is_a_complete_system(name):
    facts = evaluate_fleet(f"let r = fleet.{name}; config = r.config; in " + """{
      inherit (r) failedAssertions;
      hostName = config.networking.hostName;
      fileSystems = builtins.attrNames config.fileSystems;
      bootFs = config.fileSystems."/boot".fsType;
      systemdBoot = config.boot.loader.systemd-boot.enable;
      deployUser = config.homelab.users.deploy.enable;
      monitoring = config.homelab.services.monitoring.enable;
      stateVersion = config.system.stateVersion;
    }""")
    assert facts["failedAssertions"] == []
    assert facts["hostName"] == name
    assert {"/", "/boot"} <= set(facts["fileSystems"])
    assert facts["bootFs"] == "vfat" and facts["systemdBoot"] is True
    assert facts["deployUser"] is (name != "Template")
    assert facts["monitoring"] is True


def test_fleet_host_folders_hold_only_what_differs():
    """Name, common.nix and the deploy-user switch come from the flake's host builder."""
    for name in HOSTS:
        text = (REPO / "hosts" / name / "default.nix").read_text()
        assert "networking.hostName" not in text, f"hosts/{name}: the name comes from the folder"
        assert "common.nix" not in text, f"hosts/{name}: the host builder imports hosts/common.nix"
        assert "system.stateVersion" in text, f"hosts/{name}: every host states its own stateVersion"


def _fake_hosts(tmp_path: Path, hosts: dict[str, str]) -> Path:
    hosts_dir = tmp_path / "hosts"
    hosts_dir.mkdir()
    # A common.nix of its own: the real one would pull every homelab module in.
    (hosts_dir / "common.nix").write_text('{ system.stateVersion = "26.05"; }\n')
    for name, text in hosts.items():
        (hosts_dir / name).mkdir()
        (hosts_dir / name / "default.nix").write_text(text)
    return hosts_dir


def test_fleet_host_name_comes_from_its_folder(tmp_path):
    hosts_dir = _fake_hosts(tmp_path, {"Gamma": "{ }\n", "delta-2": "{ }\n"})
    for name in ["Gamma", "delta-2"]:
        assert evaluate([host(name, hosts_dir)], "config.networking.hostName") == name


def test_fleet_host_folder_cannot_rename_the_host(tmp_path):
    hosts_dir = _fake_hosts(tmp_path, {"Gamma": '{ networking.hostName = "Other"; }\n'})
    result = run([host("Gamma", hosts_dir)], "config.networking.hostName")
    assert result.returncode != 0, "a folder that sets another hostName must not evaluate"
    assert "networking.hostName" in result.stderr and "conflicting definition" in result.stderr, result.stderr


def test_fleet_real_hosts_become_the_expected_deploy_nodes():
    nodes = evaluate_fleet(
        f"let mocks = import {nix_path(MOCKS)} {{ }}; in "
        f"(import {nix_path(REPO / 'lib' / 'deploy-nodes.nix')} {{ activate = mocks.activate; }} fleet).nodes"
    )
    assert sorted(nodes) == sorted(h for h in HOSTS if h != "Template")
    assert nodes["Ingress"]["hostname"] == "192.168.0.10"
    assert nodes["Development"]["hostname"] == "192.168.0.91"
    for name in ["Niko", "Testing", "Production"]:
        assert nodes[name]["hostname"] == name, "unknown addresses default to the host name"
    for node in nodes.values():
        assert list(node["profiles"]) == ["system"]
        assert (node["sshUser"], node["user"], node["tempPath"]) == ("deploy", "root", "/tmp")


# --- the deploy user ---------------------------------------------------------------------------


def test_fleet_deploy_user_account_and_sudo_rules():
    facts = evaluate([HOMELAB, DEPLOY_HOST, '{ homelab.users.deploy.authorizedKeys = [ "ssh-ed25519 AAAA ci" "ssh-ed25519 BBBB ws" ]; }'], """{
      inherit (r) failedAssertions warnings;
      user = config.users.users.deploy;
      group = config.users.groups ? deploy;
      sudo = config.security.sudo.extraRules;
      trusted = config.nix.settings.trusted-users;
    }""")
    assert facts["failedAssertions"] == [] and facts["warnings"] == []
    user = facts["user"]
    assert user["isSystemUser"] is True and facts["group"] is True
    assert user["shell"].endswith("-bash-interactive-5.2"), "ssh runs deploy-rs's commands through the login shell"
    assert user["hashedPassword"] == "*"
    assert user["openssh"]["authorizedKeys"]["keys"] == ["ssh-ed25519 AAAA ci", "ssh-ed25519 BBBB ws"]
    assert facts["sudo"] == [{
        "users": ["deploy"],
        "runAs": "root",
        "commands": [
            {"command": "/nix/store/*-activatable-*/activate-rs", "options": ["NOPASSWD"]},
            {"command": "/run/current-system/sw/bin/rm /tmp" + CANARY, "options": ["NOPASSWD"]},
        ],
    }]
    assert facts["trusted"] == ["deploy"]


def test_fleet_deploy_user_follows_ssh_user_and_temp_path():
    facts = evaluate([HOMELAB, DEPLOY_HOST, '{ homelab.deploy = { sshUser = "ci"; tempPath = "/var/lib/deploy-rs"; }; }'], """{
      users = builtins.attrNames config.users.users;
      sudo = config.security.sudo.extraRules;
    }""")
    assert facts["users"] == ["ci"]
    assert facts["sudo"][0]["users"] == ["ci"]
    assert facts["sudo"][0]["commands"][1]["command"] == "/run/current-system/sw/bin/rm /var/lib/deploy-rs" + CANARY


def test_fleet_deploy_user_without_keys_warns():
    warnings = evaluate([HOMELAB, DEPLOY_HOST], "r.warnings")
    assert len(warnings) == 1 and "authorizedKeys is" in warnings[0] and "Box" in warnings[0]


def test_fleet_signed_closures_mode_does_not_trust_the_user():
    facts = evaluate([HOMELAB, DEPLOY_HOST, """{ homelab.users.deploy = {
        trust = "signed-closures"; closureSigningKeys = [ "ci-1:AAAA=" ]; }; }"""], """{
      inherit (r) failedAssertions;
      inherit (config.nix.settings) trusted-users trusted-public-keys require-sigs;
    }""")
    assert facts == {"failedAssertions": [], "trusted-users": [], "trusted-public-keys": ["ci-1:AAAA="], "require-sigs": True}


def test_fleet_signed_closures_mode_needs_a_key_or_the_cache():
    failed = evaluate([HOMELAB, DEPLOY_HOST, '{ homelab.users.deploy.trust = "signed-closures"; }'], "r.failedAssertions")
    assert len(failed) == 1 and "closureSigningKeys" in failed[0]
    with_cache = evaluate([HOMELAB, DEPLOY_HOST, """{ homelab.users.deploy.trust = "signed-closures";
        homelab.nixCache = { enable = true; url = "http://cache.lan:5000"; publicKey = "cache-1:AAAA="; }; }"""],
        "{ inherit (r) failedAssertions; keys = config.nix.settings.trusted-public-keys; }")
    assert with_cache == {"failedAssertions": [], "keys": ["cache-1:AAAA="]}


def test_fleet_deploy_user_needs_sudo():
    failed = evaluate([HOMELAB, DEPLOY_HOST, "{ security.sudo.enable = false; }"], "r.failedAssertions")
    assert len(failed) == 1 and "security.sudo.enable" in failed[0]


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("homelab.deploy.confirmTimeout = 0;", "confirmTimeout"),
        ('homelab.users.deploy.trust = "root";', "trust"),
        ('homelab.deploy.tempPath = "relative";', "must be an absolute path"),
        ('homelab.deploy.tempPath = "/tmp/a b";', "contains a character sudoers would interpret"),
    ],
)
def test_fleet_deploy_options_reject_bad_values(setting, error):
    result = run([HOMELAB, DEPLOY_HOST, f"{{ {setting} }}"],
                 "{ inherit (r) failedAssertions; deploy = config.homelab.deploy; "
                 "trust = config.homelab.users.deploy.trust; sudo = config.security.sudo.extraRules; }")
    failed = json.loads(result.stdout)["failedAssertions"] if result.returncode == 0 else []
    assert result.returncode != 0 or failed, f"{setting} was accepted"
    assert error in result.stderr or any(error in message for message in failed)


# --- monitoring ----------------------------------------------------------------------------------


def test_fleet_monitoring_wires_node_exporter_and_the_generation_exporter():
    facts = evaluate([HOMELAB, '{ networking.hostName = "Box"; boot.loader.systemd-boot.enable = true; homelab.services.monitoring.enable = true; }'], """{
      inherit (r) failedAssertions;
      node = config.services.prometheus.exporters.node;
      service = config.systemd.services.nixos-generation-exporter;
      path = config.systemd.paths.nixos-generation-exporter.pathConfig;
      timer = config.systemd.timers.nixos-generation-exporter.timerConfig;
      activation = config.system.activationScripts.nixos-generation-exporter.text;
      tmpfiles = config.systemd.tmpfiles.rules;
    }""")
    assert facts["failedAssertions"] == []
    assert facts["node"]["enable"] is True
    assert "--collector.textfile.directory=/var/lib/prometheus-node-exporter-text" in facts["node"]["extraFlags"]
    env = facts["service"]["environment"]
    assert env == {
        "NIXOS_GEN_OUTPUT_DIR": "/var/lib/prometheus-node-exporter-text",
        "NIXOS_GEN_HOST": "Box",
        "NIXOS_GEN_ESP": "/boot",
        "NIXOS_GEN_BOOT_ENTRIES": "/boot/loader/entries",
    }
    assert facts["service"]["serviceConfig"]["Type"] == "oneshot"
    assert facts["path"]["PathChanged"] == ["/nix/var/nix/profiles", "/boot/loader"]
    assert facts["timer"]["OnUnitActiveSec"] == "1min"
    # /run/current-system moves only after the activation snippets: pass the new system in.
    assert 'NIXOS_GEN_CURRENT_SYSTEM="$systemConfig"' in facts["activation"]
    assert "|| echo" in facts["activation"], "a failing exporter must not fail the activation"
    assert "d /var/lib/prometheus-node-exporter-text 0755 root root -" in facts["tmpfiles"]


def test_fleet_monitoring_follows_xbootldr_and_grub_hosts():
    xbootldr = evaluate([HOMELAB, """{ boot.loader.systemd-boot = { enable = true; xbootldrMountPoint = "/xboot"; };
        boot.loader.efi.efiSysMountPoint = "/efi"; homelab.services.monitoring.enable = true; }"""],
        "config.systemd.services.nixos-generation-exporter.environment")
    assert (xbootldr["NIXOS_GEN_ESP"], xbootldr["NIXOS_GEN_BOOT_ENTRIES"]) == ("/efi", "/xboot/loader/entries")
    grub = evaluate([HOMELAB, "{ homelab.services.monitoring.enable = true; }"],
                    "config.systemd.paths.nixos-generation-exporter.pathConfig.PathChanged")
    assert grub == ["/nix/var/nix/profiles"]


@pytest.mark.parametrize("directory", ["/tmp/metrics", "/var/tmp", "relative/dir"])
def test_fleet_monitoring_rejects_textfile_directories_node_exporter_cannot_see(directory):
    failed = evaluate([HOMELAB, f'{{ homelab.services.monitoring = {{ enable = true; textfileDirectory = "{directory}"; }}; }}'],
                      "r.failedAssertions")
    assert len(failed) == 1 and "PrivateTmp" in failed[0]
