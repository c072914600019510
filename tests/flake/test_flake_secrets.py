"""homelab.secrets (modules/secrets): what it asks of sops-nix (the host's own SSH host key as
its only key, each secret's owner, mode and path), what it refuses, and that the real hosts have
their sops file where .sops.yaml's rules expect it. Needs NIXPKGS_LIB, like
test_flake_modules.py; sops-nix's own options are a free-form stand-in (module-eval.nix), so
the names set here were checked against sops-nix's modules/sops/default.nix by hand."""
from __future__ import annotations

import pytest
from test_flake_modules import HOMELAB, HOSTS, REPO, evaluate, evaluate_fleet, nix_path

# NixOS always declares root; the stub declares no user of its own.
SECRETS_HOST = '{ networking.hostName = "Box"; users.users.root = { }; users.users.app = { isSystemUser = true; group = "app"; }; }'


@pytest.fixture
def sops_file(tmp_path) -> str:
    path = tmp_path / "Box.yaml"
    path.write_text("encrypted: by sops, in real life\n")
    return nix_path(path)


def test_fleet_secrets_use_the_host_key_and_nothing_else(sops_file):
    facts = evaluate([HOMELAB, SECRETS_HOST, f"""{{ homelab.secrets = {{
        enable = true;
        sopsFile = {sops_file};
        secrets."app/token" = {{ owner = "app"; mode = "0440"; path = "/var/lib/app/token"; restartUnits = [ "app.service" ]; }};
        secrets.plain = {{ }};
      }}; }}"""], """{
      inherit (r) failedAssertions;
      defaultSopsFile = toString config.sops.defaultSopsFile;
      age = config.sops.age;
      gnupg = config.sops.gnupg;
      validate = config.sops.validateSopsFiles;
      secrets = config.sops.secrets;
    }""")
    assert facts["failedAssertions"] == []
    assert facts["defaultSopsFile"].endswith("/Box.yaml")
    assert facts["age"] == {"sshKeyPaths": ["/etc/ssh/ssh_host_ed25519_key"], "keyFile": None, "generateKey": False}
    assert facts["gnupg"] == {"sshKeyPaths": []}
    assert facts["validate"] is True
    assert facts["secrets"] == {
        "app/token": {"key": "app/token", "owner": "app", "mode": "0440", "format": "yaml",
                      "path": "/var/lib/app/token", "restartUnits": ["app.service"]},
        "plain": {"key": "plain", "owner": "root", "mode": "0400", "format": "yaml", "restartUnits": []},
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ('sopsFile = /. + "/nonexistent/Box.yaml"; secrets.x = { };', "do not exist"),
        ("sopsFile = null; secrets.x = { };", "homelab.secrets.sopsFile is not set"),
        ('sopsFile = SOPS; secrets.x = { owner = "nobody-here"; };', "nobody-here"),
    ],
)
def test_fleet_secrets_refuse_what_activation_would_fail_on(sops_file, settings, message):
    settings = settings.replace("SOPS", sops_file)
    failed = evaluate([HOMELAB, SECRETS_HOST, f"{{ homelab.secrets = {{ enable = true; {settings} }}; }}"],
                      "r.failedAssertions")
    assert any(message in m for m in failed), failed


def test_fleet_secrets_from_a_build_output_skip_the_evaluation_time_check():
    facts = evaluate([HOMELAB, SECRETS_HOST, """{ homelab.secrets = {
        enable = true; validateSopsFiles = false;
        sopsFile = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-ndh-test-secret-a/secret.sops";
        secrets.x = { format = "binary"; }; }; }"""],
        "{ inherit (r) failedAssertions; validate = config.sops.validateSopsFiles; format = config.sops.secrets.x.format; }")
    assert facts == {"failedAssertions": [], "validate": False, "format": "binary"}


def test_fleet_secrets_mode_must_be_octal(sops_file):
    from test_flake_modules import run

    result = run([HOMELAB, SECRETS_HOST, f'{{ homelab.secrets = {{ enable = true; sopsFile = {sops_file}; secrets.x.mode = "rw-------"; }}; }}'],
                 "config.sops.secrets")
    assert result.returncode != 0 and "mode" in result.stderr


def test_fleet_secrets_are_off_unless_enabled():
    assert evaluate([HOMELAB, '{ networking.hostName = "Box"; }'], "config.sops") == {}


def test_fleet_real_hosts_point_at_their_own_sops_file():
    facts = evaluate_fleet("""builtins.mapAttrs (_: h: {
      file = toString h.config.homelab.secrets.sopsFile;
      enabled = h.config.homelab.secrets.enable;
      sops = h.config.sops;
    }) fleet""")
    for name in HOSTS:
        assert facts[name]["file"] == str(REPO / "secrets" / f"{name}.yaml")
        # No secret exists yet: a host enables homelab.secrets with its first one (docs/secrets.md).
        assert facts[name]["enabled"] is False and facts[name]["sops"] == {}


def test_fleet_every_deployable_host_has_a_published_host_key():
    """.sops.yaml's host recipients come from secrets/host-keys/<Host>.pub
    (tests/secrets/test_secrets_keys.py); here the set of deployable hosts is the evaluated one."""
    deployable = evaluate_fleet("builtins.filter (n: fleet.${n}.config.homelab.users.deploy.enable) (builtins.attrNames fleet)")
    published = sorted(p.stem for p in (REPO / "secrets" / "host-keys").glob("*.pub"))
    assert published == sorted(deployable)
