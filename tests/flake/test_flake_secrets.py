"""homelab.secrets (modules/secrets) with sops-nix's real NixOS module: hosts declare their
secrets in sops.secrets.<name>, sops-nix's own options, and homelab.secrets makes the host's own
SSH host key the only key and the host's sops file the default. The values are read back from
sops-nix's options and from the manifest sops-nix writes for sops-install-secrets, so a name
sops-nix does not have fails here. Also what homelab.secrets refuses, and that the real hosts
have their sops file where .sops.yaml's rules expect it. Needs NIXPKGS_LIB and SOPS_NIX, like
test_flake_modules.py."""
from __future__ import annotations

import hashlib

import pytest
from flake_modules_lib import HOMELAB, HOSTS, REPO, evaluate, evaluate_fleet, host, nix_path, run

# NixOS always declares root (group root); the stub declares no user of its own.
SECRETS_HOST = ('{ networking.hostName = "Box"; users.users.root = { group = "root"; }; '
                'users.users.app = { isSystemUser = true; group = "app"; }; }')
KEY = "/etc/ssh/ssh_host_ed25519_key"
STORE_FILE = '"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-ndh-test-secret-a/secret.sops"'

# sops-nix's manifest, what sops-install-secrets reads at activation. Its text refers to the sops
# files' store paths; only the content is compared.
MANIFEST = "builtins.fromJSON (builtins.unsafeDiscardStringContext config.system.build.sops-nix-manifest.text)"
# What a test reads: sops-nix's options (paths as strings, so none is copied to a store) and its manifest.
FACTS = """{
  inherit (r) failedAssertions;
  enabled = config.homelab.secrets.enable;
  defaultSopsFile = toString config.sops.defaultSopsFile;
  age = { inherit (config.sops.age) sshKeyPaths keyFile generateKey; };
  gnupg = { inherit (config.sops.gnupg) home sshKeyPaths; };
  validate = config.sops.validateSopsFiles;
  secrets = builtins.mapAttrs (_: s: s // { sopsFile = toString s.sopsFile; }) config.sops.secrets;
  manifest = MANIFEST;
}""".replace("MANIFEST", MANIFEST)


@pytest.fixture
def sops_file(tmp_path):
    path = tmp_path / "Box.yaml"
    path.write_text("encrypted: by sops, in real life\n")
    return path


def secret(name: str, **values) -> dict:
    """sops.secrets.<name> as sops-nix fills it in for a root-owned secret, less its sops file."""
    return {"name": name, "key": name, "path": f"/run/secrets/{name}", "format": "yaml", "mode": "0400",
            "owner": None, "uid": 0, "group": None, "gid": 0, "restartUnits": [], "reloadUnits": [],
            "neededForUsers": False, **values}


def test_fleet_secrets_use_the_host_key_and_nothing_else(sops_file):
    facts = evaluate([HOMELAB, SECRETS_HOST, f"""{{
      homelab.secrets.sopsFile = {nix_path(sops_file)};
      sops.secrets."app/token" = {{ owner = "app"; mode = "0440"; path = "/var/lib/app/token"; restartUnits = [ "app.service" ]; }};
      sops.secrets.tls = {{ key = "tls/key"; owner = "root"; format = "json"; }};
      sops.secrets.plain = {{ }};
    }}"""], FACTS)
    assert facts["failedAssertions"] == []
    assert facts["enabled"] is True, "declaring a secret turns homelab.secrets on"
    assert facts["defaultSopsFile"] == str(sops_file)
    assert facts["age"] == {"sshKeyPaths": [KEY], "keyFile": None, "generateKey": False}
    assert facts["gnupg"] == {"home": None, "sshKeyPaths": []}
    assert facts["validate"] is True
    file = {"sopsFile": str(sops_file), "sopsFileHash": hashlib.sha256(sops_file.read_bytes()).hexdigest()}
    assert facts["secrets"] == {
        "app/token": secret("app/token", owner="app", group="app", mode="0440", path="/var/lib/app/token",
                            restartUnits=["app.service"], **file),
        "tls": secret("tls", key="tls/key", owner="root", group="root", format="json", **file),
        "plain": secret("plain", **file),
    }

    manifest = facts["manifest"]
    assert manifest["ageSshKeyPaths"] == [KEY] and manifest["ageKeyFile"] is None
    assert manifest["sshKeyPaths"] == [] and manifest["gnupgHome"] is None
    installed = {s["name"]: s for s in manifest["secrets"]}
    assert sorted(installed) == ["app/token", "plain", "tls"]
    for name, expected in facts["secrets"].items():
        # The manifest names the sops file by its copy in the store, which activation reads.
        assert installed[name]["sopsFile"].startswith("/nix/store/") and installed[name]["sopsFile"].endswith("-Box.yaml")
        assert installed[name] == {**expected, "sopsFile": installed[name]["sopsFile"]}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ('homelab.secrets.sopsFile = /. + "/nonexistent/Box.yaml"; sops.secrets.x = { };', "do not exist"),
        # Turned on without any secret yet, it still checks the host's file.
        ('homelab.secrets = { enable = true; sopsFile = /. + "/nonexistent/Box.yaml"; };', "do not exist"),
        ("sops.secrets.x = { }; sops.secrets.y.sopsFile = SOPS;",
         "homelab.secrets.sopsFile is not set and the secrets x name no sopsFile"),
        ('homelab.secrets.sopsFile = SOPS; sops.secrets.x.owner = "nobody-here";', "nobody-here"),
        # sops-nix's own assertion, so its config is evaluated too.
        ('homelab.secrets.sopsFile = SOPS; sops.secrets.x = { owner = "app"; uid = 5; };',
         "In x exactly one of sops.owner and sops.uid must be set"),
    ],
)
def test_fleet_secrets_refuse_what_activation_would_fail_on(sops_file, settings, message):
    settings = settings.replace("SOPS", nix_path(sops_file))
    failed = evaluate([HOMELAB, SECRETS_HOST, f"{{ {settings} }}"], "r.failedAssertions")
    assert any(message in m for m in failed), failed


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ('sops.secrets.x.ownr = "app";', "sops.secrets.x.ownr' does not exist"),
        ('sops.secrets.x.format = "toml";', "sops.secrets.x.format' is not of type"),
        # The per-secret options homelab.secrets used to copy are gone: hosts use sops-nix's.
        ('homelab.secrets.secrets.x = { };', "homelab.secrets.secrets' does not exist"),
    ],
)
def test_fleet_secrets_are_checked_against_sops_nix_s_options(sops_file, settings, error):
    result = run([HOMELAB, SECRETS_HOST, f"{{ homelab.secrets.sopsFile = {nix_path(sops_file)}; {settings} }}"],
                 MANIFEST)
    assert result.returncode != 0 and error in result.stderr, result.stderr


def test_fleet_secrets_from_a_build_output_skip_the_evaluation_time_check():
    facts = evaluate([HOMELAB, SECRETS_HOST, f"""{{
      homelab.secrets = {{ validateSopsFiles = false; sopsFile = {STORE_FILE}; }};
      sops.secrets.x = {{ format = "binary"; }}; }}"""], FACTS)
    assert facts["failedAssertions"] == [] and facts["validate"] is False
    # No hash: sops-nix would have to read the file, a build output, during evaluation.
    assert facts["secrets"]["x"] == secret("x", format="binary", sopsFile=STORE_FILE.strip('"'), sopsFileHash="")
    assert [s["sopsFile"] for s in facts["manifest"]["secrets"]] == [STORE_FILE.strip('"')]


def test_fleet_secrets_are_off_until_a_host_declares_one():
    facts = evaluate([HOMELAB, '{ networking.hostName = "Box"; }'], """{
      inherit (r) failedAssertions;
      enabled = config.homelab.secrets.enable;
      secrets = config.sops.secrets;
      defaultSopsFile = (builtins.tryEval config.sops.defaultSopsFile).success;
    }""")
    assert facts == {"failedAssertions": [], "enabled": False, "secrets": {}, "defaultSopsFile": False}


def test_fleet_real_hosts_point_at_their_own_sops_file():
    facts = evaluate_fleet("""builtins.mapAttrs (_: h: {
      file = toString h.config.homelab.secrets.sopsFile;
      enabled = h.config.homelab.secrets.enable;
      secrets = h.config.sops.secrets;
    }) fleet""")
    for name in HOSTS:
        assert facts[name]["file"] == str(REPO / "secrets" / f"{name}.yaml")
        # No secret exists yet: homelab.secrets turns on with a host's first one (docs/secrets.md).
        assert facts[name]["enabled"] is False and facts[name]["secrets"] == {}


def test_fleet_real_host_s_first_secret_asks_for_its_sops_file():
    """hosts/common.nix's default file is secrets/<Host>.yaml; none exists yet."""
    failed = evaluate([host("Production"), '{ sops.secrets."db/password" = { }; }'], "r.failedAssertions")
    assert any(str(REPO / "secrets" / "Production.yaml") in m and "`sops secrets/Production.yaml`" in m
               for m in failed), failed


def test_fleet_every_deployable_host_has_a_published_host_key():
    """.sops.yaml's host recipients come from secrets/host-keys/<Host>.pub
    (tests/secrets/test_secrets_keys.py); here the set of deployable hosts is the evaluated one."""
    deployable = evaluate_fleet("builtins.filter (n: fleet.${n}.config.homelab.users.deploy.enable) (builtins.attrNames fleet)")
    published = sorted(p.stem for p in (REPO / "secrets" / "host-keys").glob("*.pub"))
    assert published == sorted(deployable)
