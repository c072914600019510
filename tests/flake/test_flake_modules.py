"""homelab modules and the real hosts, evaluated with nixpkgs' lib (option types, merging,
assertions, the generated sudo rules) through tests/flake/module-eval.nix.

Needs NIXPKGS_LIB (nixpkgs' `lib` directory) and SOPS_NIX (a sops-nix source tree: every host
gets its real NixOS module, as flake.nix gives it); without them every test here is skipped
naming the variable (tests/support/upstream.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.upstream import nixpkgs_lib, sops_nix

REPO = Path(__file__).resolve().parents[2]
MODULE_EVAL = Path(__file__).resolve().parent / "module-eval.nix"
MOCKS = Path(__file__).resolve().parent / "mock-fleet.nix"
HOSTS = sorted(p.name for p in (REPO / "hosts").iterdir() if p.is_dir())
CANARY = "/deploy-rs-canary-" + "[0-9a-df-np-sv-z]" * 32


def nix_path(path: Path | str) -> str:
    return f"(/. + {json.dumps(str(path))})"


def inputs() -> str:
    """The upstream trees module-eval.nix takes, as Nix bindings `lib` and `sopsNix`."""
    return f"lib = import {nix_path(nixpkgs_lib())}; sopsNix = {nix_path(sops_nix())}; "


def run(modules: list[str], select: str, *, shape: str = "cache") -> subprocess.CompletedProcess[str]:
    expr = (
        f"let {inputs()}"
        f"r = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; harmoniaShape = {json.dumps(shape)}; "
        f"modules = [ {' '.join(modules)} ]; }}; "
        f"config = r.config; in {select}"
    )
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=120,
    )


def evaluate(modules: list[str], select: str, *, shape: str = "cache"):
    result = run(modules, select, shape=shape)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(result.stdout)


def host(name: str, hosts_dir: Path = REPO / "hosts") -> str:
    """Host `name` as the flake builds it: its folder, hosts/common.nix and its name."""
    return (
        f"{{ imports = import {nix_path(REPO / 'lib' / 'host-modules.nix')} "
        f"{{ hostsDir = {nix_path(hosts_dir)}; }} {json.dumps(name)}; }}"
    )


FLEET_HOSTS = nix_path(REPO / "lib" / "fleet-hosts.nix")


def fleet_expr(select: str) -> str:
    """`select` over the real hosts as flake.nix assembles them (lib/fleet-hosts.nix), each
    evaluated by module-eval.nix: `fleet.<Host>` is { config; failedAssertions; warnings; }."""
    return (
        f"let {inputs()}"
        f"fleet = import {FLEET_HOSTS} {{ nixosSystem = {{ modules }}: "
        f"import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix modules; }}; }}; in {select}"
    )


def evaluate_fleet(select: str):
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", fleet_expr(select)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(result.stdout)


HOMELAB = nix_path(REPO / "modules")
DEPLOY_HOST = '{ networking.hostName = "Box"; homelab.users.deploy.enable = true; }'


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


# --- Harmonia and the cache clients ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "select"),
    [
        ("cache", "config.services.harmonia.cache"),
        ("flat-list", "config.services.harmonia"),
    ],
)
def test_fleet_harmonia_uses_the_shape_nixpkgs_has(shape, select):
    facts = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                     f"{{ inherit (r) failedAssertions; h = {select}; ports = config.networking.firewall.allowedTCPPorts; }}",
                     shape=shape)
    assert facts["failedAssertions"] == []
    assert facts["h"]["enable"] is True
    assert facts["h"]["signKeyPaths"] == ["/var/lib/homelab-harmonia/signing-key.sec"]
    assert facts["h"]["settings"] == {"bind": "[::]:5000", "priority": 30}
    assert facts["ports"] == []


def test_fleet_harmonia_single_key_nixpkgs():
    facts = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                     "{ inherit (r) failedAssertions; h = config.services.harmonia; }", shape="flat-single")
    assert facts["failedAssertions"] == []
    assert facts["h"]["signKeyPath"] == "/var/lib/homelab-harmonia/signing-key.sec"
    two_keys = evaluate([HOMELAB, '{ homelab.services.harmonia = { enable = true; signKeyPaths = [ "/a" "/b" ]; }; }'],
                        "r.failedAssertions", shape="flat-single")
    assert len(two_keys) == 1 and "exactly one signing key" in two_keys[0]


def test_fleet_harmonia_generates_its_key_before_starting():
    unit = evaluate([HOMELAB, '{ homelab.services.harmonia.enable = true; }'],
                    "config.systemd.services.homelab-harmonia-keygen")
    assert unit["requiredBy"] == ["harmonia.service"] and unit["before"] == ["harmonia.service"]
    assert unit["serviceConfig"]["Type"] == "oneshot"


def _keygen_script(tmp: Path) -> str:
    """The key unit's script as the module writes it, for keys under `tmp`, with this host's
    nix-store in place of the package's."""
    module = (
        "{ homelab.services.harmonia = { enable = true; keyName = \"cache-test-1\"; "
        f"signKeyPaths = [ {json.dumps(str(tmp / 'var/lib/harmonia/signing-key.sec'))} ]; "
        f"publicKeyFile = {json.dumps(str(tmp / 'var/lib/harmonia/signing-key.pub'))}; }}; }}"
    )
    expr = (
        f"let {inputs()}"
        f"r = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; scriptsAsText = true; modules = [ {HOMELAB} {module} ]; }}; "
        "in r.config.systemd.services.homelab-harmonia-keygen.serviceConfig.ExecStart"
    )
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    nix_store = shutil.which("nix-store")
    if nix_store is None:
        pytest.skip("nix-store not found on PATH: the key unit's script runs it")
    return json.loads(result.stdout).replace(
        "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nix-2.28/bin/nix-store", nix_store
    )


def _readable_by_nobody(path: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("reading as another user needs root and setpriv (util-linux)")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)],
                            capture_output=True, text=True, timeout=30)
    return result.returncode == 0


@pytest.mark.parametrize("umask", [0o077, 0o022], ids=["umask-077", "umask-022"])
def test_fleet_harmonia_public_key_is_readable_by_everyone(tmp_path, umask):
    tmp_path.chmod(0o755)
    script = _keygen_script(tmp_path)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr
    public = tmp_path / "var/lib/harmonia/signing-key.pub"
    secret = tmp_path / "var/lib/harmonia/signing-key.sec"
    assert public.read_text().startswith("cache-test-1:")
    assert _readable_by_nobody(public), "the public key must be readable by others"
    assert not _readable_by_nobody(secret), "the secret key must not"
    assert secret.stat().st_mode & 0o077 == 0


def test_fleet_harmonia_repairs_a_public_key_inside_a_private_directory(tmp_path):
    """Keys an earlier version made: a 0700 directory (umask 077) holding both halves."""
    tmp_path.chmod(0o755)
    script = _keygen_script(tmp_path)
    keys = tmp_path / "var/lib/harmonia"
    keys.mkdir(parents=True)
    (tmp_path / "var").chmod(0o700)
    keys.chmod(0o700)
    (keys / "signing-key.sec").write_text("secret")
    (keys / "signing-key.sec").chmod(0o600)
    (keys / "signing-key.pub").write_text("cache-test-1:AAAA")
    (keys / "signing-key.pub").chmod(0o600)
    assert not _readable_by_nobody(keys / "signing-key.pub")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (keys / "signing-key.sec").read_text() == "secret", "an existing key is kept"
    assert _readable_by_nobody(keys / "signing-key.pub")
    assert not _readable_by_nobody(keys / "signing-key.sec")


def test_fleet_harmonia_nginx_front_and_firewall():
    facts = evaluate([HOMELAB, """{ homelab.services.harmonia = { enable = true; openFirewall = true;
        nginx = { enable = true; serverName = "cache.example.lan"; }; }; }"""], """{
      inherit (r) failedAssertions;
      bind = config.services.harmonia.cache.settings.bind;
      ports = config.networking.firewall.allowedTCPPorts;
      location = config.services.nginx.virtualHosts."cache.example.lan".locations."/".proxyPass;
    }""")
    assert facts == {
        "failedAssertions": [],
        "bind": "127.0.0.1:5000",
        "ports": [80, 443],
        "location": "http://127.0.0.1:5000",
    }
    plain = evaluate([HOMELAB, "{ homelab.services.harmonia = { enable = true; openFirewall = true; port = 5001; }; }"],
                     "config.networking.firewall.allowedTCPPorts")
    assert plain == [5001]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('signKeyPaths = [ "/nix/store/abc-key" ];', "outside /nix/store"),
        ("signKeyPaths = [ ];", "signKeyPaths is empty"),
        ('nginx = { enable = true; serverName = "c"; enableACME = false; };', "sslCertificate"),
    ],
)
def test_fleet_harmonia_rejects_unsafe_settings(setting, message):
    failed = evaluate([HOMELAB, f"{{ homelab.services.harmonia = {{ enable = true; {setting} }}; }}"], "r.failedAssertions")
    assert any(message in m for m in failed), failed


def test_fleet_nix_cache_client_settings():
    settings = evaluate([HOMELAB, """{ homelab.nixCache = { enable = true; url = "http://cache.lan:5000";
        publicKey = "cache.lan-1:AAAAbbbb+/=="; }; }"""],
        "{ inherit (r) failedAssertions; s = config.nix.settings; }")
    assert settings["failedAssertions"] == []
    assert settings["s"]["substituters"] == ["http://cache.lan:5000"]
    assert settings["s"]["trusted-public-keys"] == ["cache.lan-1:AAAAbbbb+/=="]
    assert settings["s"]["require-sigs"] is True
    assert settings["s"]["narinfo-cache-negative-ttl"] == 60


def test_fleet_nix_cache_rejects_a_malformed_url_or_key():
    failed = evaluate([HOMELAB, '{ homelab.nixCache = { enable = true; url = "cache.lan"; publicKey = "AAAA"; }; }'],
                      "r.failedAssertions")
    assert len(failed) == 2
    assert any("not an http://" in m for m in failed) and any("not a nix public key" in m for m in failed)
