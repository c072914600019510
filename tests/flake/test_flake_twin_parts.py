"""The parts of a twin (twins/, docs/twins.md) on hosts made for each: a host with secrets, one
with a hardware-configuration, one that asks the internet for things; the twin's VLAN NIC as the
start script's bash reads it; the twin addresses lib/twin-addresses.nix refuses. Evaluated with
nixpkgs' real lib and sops-nix's real module (module-eval.nix), nothing built. Needs NIXPKGS_LIB
and SOPS_NIX, like test_flake_modules.py."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
from flake_modules_lib import REPO, evaluate, host, inputs, nix_path, run

TWINS = nix_path(REPO / "twins")
ADDRESS = '{ homelab.twin.address = "192.168.0.5"; }'
FAKE_STORE = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-"
SECRETS = """{
  users.users.root = { group = "root"; };
  users.users.app = { isSystemUser = true; group = "app"; };
  homelab.secrets.sopsFile = SOPS;
  sops.secrets."app/token" = { owner = "app"; mode = "0440"; path = "/var/lib/app/token"; restartUnits = [ "app.service" ]; };
  sops.secrets.tls = { key = "tls/key"; owner = "root"; format = "json"; };
  sops.secrets.env = { format = "dotenv"; key = "API_KEY"; };
  sops.secrets.blob = { format = "binary"; neededForUsers = true; };
}"""
MANIFEST = "builtins.fromJSON (builtins.unsafeDiscardStringContext c.system.build.sops-nix-manifest.text)"
SECRET_FACTS = """let t = config.virtualisation.vmVariant; plain = c: {
  secrets = builtins.mapAttrs (_: s: s // { sopsFile = toString s.sopsFile; }) c.sops.secrets;
  age = { inherit (c.sops.age) sshKeyPaths keyFile; };
  defaultSopsFile = let d = builtins.tryEval c.sops.defaultSopsFile; in if d.success then toString d.value else null;
  validate = c.sops.validateSopsFiles;
  manifest = MANIFEST;
}; in {
  host = plain config // { inherit (r) failedAssertions; };
  twin = plain t // {
    failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) t.assertions);
    script = builtins.unsafeDiscardStringContext t.homelab.twin.testSecrets.script;
  };
}""".replace("MANIFEST", MANIFEST)


@pytest.fixture
def sops_file(tmp_path):
    path = tmp_path / "Testing.yaml"
    path.write_text("encrypted: by sops, in real life\n")
    return path


def test_twin_secrets_keep_names_owners_modes_with_test_files(sops_file):
    facts = evaluate([host("Testing"), TWINS, ADDRESS, SECRETS.replace("SOPS", nix_path(sops_file))],
                     SECRET_FACTS)
    h, t = facts["host"], facts["twin"]
    assert h["failedAssertions"] == [] and t["failedAssertions"] == []
    assert sorted(t["secrets"]) == sorted(h["secrets"]) == ["app/token", "blob", "env", "tls"]
    for name, secret in h["secrets"].items():
        twin = t["secrets"][name]
        # Same name, key, path, format, owner, group, mode, units: all but the file.
        assert {k: v for k, v in twin.items() if k not in ("sopsFile", "sopsFileHash")} == \
            {k: v for k, v in secret.items() if k not in ("sopsFile", "sopsFileHash")}
        assert secret["sopsFile"] == str(sops_file)
        file = hashlib.sha256(name.encode()).hexdigest() + ".sops"
        assert twin["sopsFile"] == f"{FAKE_STORE}twin-test-secrets/{file}" and twin["sopsFileHash"] == ""
    assert h["secrets"]["app/token"]["owner"] == "app" and h["secrets"]["app/token"]["mode"] == "0440"
    # The host's real sops file is nowhere in the twin; the key is the host's key path, which holds
    # the test key on a twin.
    assert t["defaultSopsFile"] is None and h["defaultSopsFile"] == str(sops_file)
    assert t["validate"] is False and h["validate"] is True
    assert t["age"] == h["age"] == {"sshKeyPaths": ["/etc/ssh/ssh_host_ed25519_key"], "keyFile": None}
    twin_files = {s["sopsFile"] for s in t["manifest"]["secrets"]}
    # (neededForUsers secrets have a manifest of their own, installed before users exist.)
    assert twin_files == {s["sopsFile"] for s in t["secrets"].values() if not s["neededForUsers"]}
    assert str(sops_file) not in json.dumps(t["manifest"]) and "Testing.yaml" not in json.dumps(t)
    # The test files: encrypted to the test host key, each holding its secret's key path.
    script = t["script"]
    assert "ssh-to-age <" in script and script.count("-target-host-ed25519.pub") == 1
    expected = {
        "app/token": ('{"app":{"token":"@TWIN_TEST_VALUE@"}}', "--input-type json --output-type yaml"),
        "tls": ('{"tls":{"key":"@TWIN_TEST_VALUE@"}}', "--input-type json --output-type json"),
        "env": ("API_KEY=@TWIN_TEST_VALUE@", "--input-type dotenv --output-type dotenv"),
        "blob": ("@TWIN_TEST_VALUE@", "--input-type binary --output-type binary"),
    }
    for name, (plaintext, types) in expected.items():
        file = hashlib.sha256(name.encode()).hexdigest() + ".sops"
        # (nixpkgs' escapeShellArg leaves a word of safe characters unquoted.)
        block = script[re.search(rf"printf '%s' '?{re.escape(plaintext)}'? \|", script).start():]
        assert block.index(types) < block.index(file) < block.index("rm plaintext"), name
    assert "/dev/urandom" in script and "@TWIN_TEST_VALUE@|$value" in script


def test_twin_secrets_refuse_a_format_without_a_stand_in(sops_file):
    settings = SECRETS.replace("SOPS", nix_path(sops_file)).replace(
        'format = "dotenv"; key = "API_KEY";', 'format = "ini"; key = "API_KEY";')
    result = run([host("Testing"), TWINS, ADDRESS, settings],
                 "builtins.unsafeDiscardStringContext config.virtualisation.vmVariant.homelab.twin.testSecrets.script")
    assert result.returncode != 0 and "sops format ini (secret key API_KEY) has no test stand-in" in result.stderr


HARDWARE = """{
  fileSystems."/" = { device = "/dev/disk/by-uuid/6a1f-root"; fsType = "xfs"; };
  fileSystems."/boot" = { device = "/dev/disk/by-uuid/ABCD-1234"; fsType = "vfat"; };
  fileSystems."/srv/data" = { device = "/dev/mapper/data"; fsType = "ext4"; };
  swapDevices = [ { device = "/dev/disk/by-uuid/swap-1"; } ];
  boot.initrd.luks.devices.data.device = "/dev/disk/by-uuid/luks-1";
}"""
HARDWARE_FACTS = """let t = config.virtualisation.vmVariant; in {
  host = { inherit (config) fileSystems swapDevices; luks = config.boot.initrd.luks.devices; };
  twin = { inherit (t) fileSystems swapDevices; luks = t.boot.initrd.luks.devices; };
}"""


def test_twin_replaces_the_host_s_hardware_configuration():
    facts = evaluate([host("Testing"), TWINS, ADDRESS, HARDWARE], HARDWARE_FACTS)
    assert sorted(facts["host"]["fileSystems"]) == ["/", "/boot", "/srv/data"]
    assert facts["host"]["swapDevices"] and facts["host"]["luks"]
    assert facts["twin"] == {
        "fileSystems": {
            "/": {"device": "/dev/disk/by-label/nixos", "fsType": "ext4", "autoResize": True},
            "/boot": {"device": "/dev/disk/by-label/ESP", "fsType": "vfat"},
        },
        "swapDevices": [],
        "luks": {},
    }


def _twin_assertions(*modules: str) -> list[str]:
    return evaluate([host("Niko"), TWINS, ADDRESS, *modules],
                    "map (a: a.message) (builtins.filter (a: !a.assertion) config.virtualisation.vmVariant.assertions)")


def test_twin_refuses_what_it_cannot_stand_in_for():
    assert _twin_assertions() == []
    failed = _twin_assertions("{ boot.loader.systemd-boot.enable = false; }")
    assert any("does not boot with systemd-boot" in m for m in failed), failed


# A host that requests certificates as nixpkgs' ACME module is configured: terms accepted, an
# email, one certificate by webroot, one by lego's own HTTP listener; and its own choice of CA
# for every certificate (Let's Encrypt's staging directory), which the twin must override.
STAND_IN = "https://acme.twins:14000/dir"
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
ACME = """{
  security.acme = {
    acceptTerms = true;
    defaults = { email = "hostmaster@example.org"; server = "STAGING"; };
    certs."niko.example.org" = { webroot = "/var/lib/acme/acme-challenge"; extraDomainNames = [ "www.niko.example.org" ]; };
    certs."mail.example.org".listenHTTP = ":80";
  };
}""".replace("STAGING", STAGING)
ACME_FACTS = """let t = config.virtualisation.vmVariant; view = c: {
  default = c.security.acme.defaults.server;
  servers = builtins.mapAttrs (_: cert: cert.server) c.security.acme.certs;
  trusted = map toString c.security.pki.certificateFiles;
  hosts = builtins.filter (l: l != "") (lib.splitString "\n" c.networking.extraHosts);
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
}; in { host = view config; twin = view t; }"""


def test_a_twin_that_requests_certificates_asks_the_local_stand_in():
    facts = evaluate([host("Niko"), TWINS, ADDRESS, ACME], ACME_FACTS)
    h, t = facts["host"], facts["twin"]
    # The host keeps its own CA; the twin asks the stand-in for every certificate.
    assert h["default"] == STAGING and set(h["servers"].values()) == {STAGING}
    assert t["default"] == STAND_IN and t["servers"] == {"niko.example.org": STAND_IN, "mail.example.org": STAND_IN}
    # It trusts the TEST ONLY CA of the stand-in's listener, the host trusts nothing new.
    assert h["trusted"] == [] and t["trusted"] == [str(REPO / "test" / "fleet" / "keys" / "twin-acme-test-ca.pem")]
    # The stand-in's name is the deployer's address on the VLAN (test_flake_twin_deployer.py
    # checks that the deployer answers there).
    assert "192.168.0.2 acme.twins" in t["hosts"] and not any("acme.twins" in line for line in h["hosts"])
    assert t["failed"] == [] and h["failed"] == []


def test_the_stand_in_wins_over_a_forced_default_server():
    forced = ACME.replace(f'server = "{STAGING}";', f'server = lib.mkForce "{STAGING}";')
    facts = evaluate([host("Niko"), TWINS, ADDRESS, "({ lib, ... }: " + forced + ")"], ACME_FACTS)
    assert facts["host"]["default"] == STAGING and facts["twin"]["default"] == STAND_IN
    assert set(facts["twin"]["servers"].values()) == {STAND_IN} and facts["twin"]["failed"] == []


@pytest.mark.parametrize("setting, shown", [
    (f'server = "{STAGING}";', f"server {STAGING}"),
    ("inheritDefaults = false;", "server https://acme-v02.api.letsencrypt.org/directory"),
    ("server = null;", "server null, lego's default"),
])
def test_a_certificate_that_asks_another_ca_is_refused_by_name(setting, shown):
    own = '{ security.acme.certs."git.example.org" = { webroot = "/var/lib/acme/acme-challenge"; SETTING }; }'
    failed = _twin_assertions(ACME, own.replace("SETTING", setting))
    assert len(failed) == 1, failed
    assert f"Niko's ACME certificates git.example.org ({shown}) do not use the twins' ACME stand-in {STAND_IN}" in failed[0]
    assert "would ask another CA, which a twin must never do" in failed[0]
    # The other certificates use the stand-in and are not named.
    assert "niko.example.org" not in failed[0] and "mail.example.org" not in failed[0]


@pytest.mark.parametrize("setting, shown", [('dnsProvider = "route53";', "dnsProvider route53"),
                                            ('s3Bucket = "acme-challenges";', "s3Bucket acme-challenges")])
def test_a_certificate_whose_challenge_needs_the_internet_is_refused_by_name(setting, shown):
    failed = _twin_assertions(ACME, f'{{ security.acme.certs."dns.example.org" = {{ {setting} }}; }}')
    assert len(failed) == 1, failed
    assert f"Niko's ACME certificates dns.example.org ({shown}) answer their challenges through a service on the internet" in failed[0]


def test_a_twin_without_certificates_gets_nothing_of_the_stand_in():
    facts = evaluate([host("Niko"), TWINS, ADDRESS], ACME_FACTS)
    assert facts["twin"] == {"default": "https://acme-v02.api.letsencrypt.org/directory", "servers": {},
                             "trusted": [], "hosts": [], "failed": []}
    assert facts["host"] == facts["twin"]


def test_twin_substitutes_only_from_the_fleet_cache():
    cache = '{ homelab.nixCache = { enable = true; url = "http://192.168.0.10:5000"; publicKey = "cache-1:AAAA"; }; }'
    facts = evaluate([host("Niko"), TWINS, ADDRESS, cache],
                     "{ host = config.nix.settings.substituters; twin = config.virtualisation.vmVariant.nix.settings.substituters; }")
    assert facts == {"host": ["http://192.168.0.10:5000", "https://cache.nixos.org/"], "twin": ["http://192.168.0.10:5000"]}


@pytest.mark.parametrize("socket", ["/tmp/ndh state/vde1.ctl", None])
def test_twin_vlan_nic_as_the_start_script_s_bash_reads_it(socket):
    """qemu-vm.nix joins virtualisation.qemu.options into the start script's `exec` line; bash
    must make them one VDE NIC on the harness's switch, or an isolated one without a switch."""
    options = evaluate([host("Ingress"), TWINS, '{ homelab.twin.address = "192.168.0.10"; }'],
                       "builtins.filter (o: builtins.match \".*twin-vlan.*\" o != null) "
                       "config.virtualisation.vmVariant.virtualisation.qemu.options")
    script = "set -eu\nprintf '%s\\n' " + " \\\n    ".join(options) + "\n"
    env = {"PATH": "/usr/bin:/bin"} | ({"QEMU_VDE_SOCKET_1": socket} if socket else {})
    words = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    netdev = f"vde,id=twin-vlan1,sock={socket}" if socket else "user,id=twin-vlan1,restrict=on"
    assert words == ["-device", "virtio-net-pci,netdev=twin-vlan1,mac=52:54:00:13:01:0a", "-netdev", netdev]


def _addresses(targets: dict[str, str], args: str = "{ }") -> subprocess.CompletedProcess[str]:
    configs = " ".join(f'{name} = {{ config.homelab.deploy.targetHost = "{target}"; }};' for name, target in targets.items())
    expr = f"let {inputs()}in import {nix_path(REPO / 'lib' / 'twin-addresses.nix')} {args} {{ {configs} }}"
    return subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          capture_output=True, text=True, timeout=60)


def test_twin_addresses_skip_real_ones_and_refuse_what_the_vlan_cannot_hold():
    result = _addresses({"A": "192.168.0.250", "B": "b.lan", "C": "192.168.0.7", "D": "d.lan"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "A": {"address": "192.168.0.250", "prefixLength": 24, "standIn": False},
        "B": {"address": "192.168.0.249", "prefixLength": 24, "standIn": True},
        "C": {"address": "192.168.0.7", "prefixLength": 24, "standIn": False},
        "D": {"address": "192.168.0.248", "prefixLength": 24, "standIn": True},
    }
    result = _addresses({"A": "10.0.0.1"})
    assert result.returncode != 0 and "A's deploy address 10.0.0.1 is outside the twins' VLAN 192.168.0.0/24" in result.stderr
    result = _addresses({"A": "fd00::1"})
    assert result.returncode != 0 and "A's deploy address fd00::1 is IPv6" in result.stderr
    result = _addresses({"A": "10.0.0.1", "B": "b.lan"}, '{ subnet = "10.0.0"; }')
    assert json.loads(result.stdout)["B"]["address"] == "10.0.0.250"


def test_twin_test_secrets_build_script_runs(sops_file, tmp_path):
    """The test secrets' build script, run by bash with stand-ins for sops and ssh-to-age that
    record what they get (no sops here): one file per secret, each from a plaintext with its key
    path and a random value of its own, encrypted to the recipient of the test host key."""
    script = evaluate([host("Testing"), TWINS, ADDRESS, SECRETS.replace("SOPS", nix_path(sops_file))],
                      "builtins.unsafeDiscardStringContext config.virtualisation.vmVariant.homelab.twin.testSecrets.script")
    # Evaluation only computes the key's store path; the build would read the file there.
    key = re.search(r"/nix/store/[0-9a-z]{32}-target-host-ed25519\.pub", script).group()
    script = script.replace(key, str(REPO / "test" / "fleet" / "keys" / "target-host-ed25519.pub"))
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "ssh-to-age").write_text('#!/bin/sh\ngrep -q "^ssh-ed25519 " && echo age1testrecipient\n')
    # sops --encrypt --age R --input-type T --output-type T FILE: records its arguments and FILE.
    (tools / "sops").write_text('#!/bin/sh\nprintf "%s\\n" "$@"; echo ---; cat "$8"\n')
    for tool in tools.iterdir():
        tool.chmod(0o755)
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, check=True,
                   env={"PATH": f"{tools}:/usr/bin:/bin", "out": str(out), "TMPDIR": str(tmp_path)})
    assert (out / "recipient").read_text() == "age1testrecipient\n"
    assert list(work.iterdir()) == [], "no plaintext is left behind"
    values = {}
    for name, kind in [("app/token", "yaml"), ("tls", "json"), ("env", "dotenv"), ("blob", "binary")]:
        args, plaintext = (out / (hashlib.sha256(name.encode()).hexdigest() + ".sops")).read_text().split("---\n")
        input_type = "json" if kind in ("yaml", "json") else kind
        assert args.split() == ["--encrypt", "--age", "age1testrecipient", "--input-type", input_type,
                                "--output-type", kind, "plaintext"]
        assert "@TWIN_TEST_VALUE@" not in plaintext
        if kind in ("yaml", "json"):
            document = json.loads(plaintext)
            values[name] = document["app"]["token"] if name == "app/token" else document["tls"]["key"]
        else:
            values[name] = plaintext.removeprefix("API_KEY=")
    assert all(len(value) == 32 for value in values.values()) and len(set(values.values())) == 4
