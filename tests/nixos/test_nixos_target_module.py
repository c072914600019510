"""test/fleet/nodes/target.nix and its variants, evaluated with nixpkgs' lib and the homelab
modules (tests/flake/module-eval.nix plus target-eval-stub.nix): the variants are this node
extended with one module each, they override what they mean to, and their closures (all but
cache-pull's) are preloaded. Needs NIXPKGS_LIB and SOPS_NIX (every node gets sops-nix's real
module, as test/vm-test.nix gives it), like tests/flake's module tests."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nixos_testlib import REPO
from support.upstream import nixpkgs_lib, sops_nix

HERE = Path(__file__).resolve().parent

# module-eval.nix adds what nixpkgs' nix.nix adds to every system (cache.nixos.org, mkAfter) and
# declares boot.growPartition as grow-partition.nix does.


def evaluate(select: str, node: str = "target.nix", extra: str = '{ networking.hostName = "target"; }'):
    p = lambda path: f"(/. + {json.dumps(str(path))})"  # noqa: E731
    expr = (
        f"let lib = import {p(nixpkgs_lib())}; sopsNix = {p(sops_nix())}; "
        f"stub = import {p(HERE / 'target-eval-stub.nix')} {{ inherit lib; fakeNixpkgs = {p(HERE / 'fake-nixpkgs')}; }}; "
        f"r = import {p(REPO / 'tests' / 'flake' / 'module-eval.nix')} {{ inherit lib sopsNix; "
        f"modules = [ stub {p(REPO / 'test' / 'fleet' / 'nodes' / node)} {extra} ]; }}; "
        f"config = r.config; variants = config.homelabTest.variants or {{ }}; in {select}"
    )
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_target_node_is_a_deployable_uefi_host():
    facts = evaluate("""{
      inherit (r) failedAssertions;
      switch = config.system.switch.enable;
      inherit (config.virtualisation) useBootLoader useEFIBoot mountHostNixStore sharedDirectories diskSize;
      rootAutoResize = config.virtualisation.fileSystems."/".autoResize;
      growPartition = config.boot.growPartition;
      substituters = config.nix.settings.substituters;
      systemdBoot = config.boot.loader.systemd-boot.enable;
      deployUser = config.homelab.users.deploy.enable;
      cache = config.homelab.nixCache.url;
      activationTimeout = config.homelab.deploy.activationTimeout;
      variant = config.environment.etc."ndh-variant".text;
      preloaded = builtins.length config.virtualisation.additionalPaths;
      variants = builtins.attrNames variants;
    }""")
    assert facts["failedAssertions"] == []
    assert facts["switch"] and facts["useBootLoader"] and facts["useEFIBoot"] and facts["systemdBoot"]
    assert facts["mountHostNixStore"] is False and facts["sharedDirectories"] == {}
    assert facts["deployUser"] and facts["cache"] == "http://cache:5000"
    assert facts["substituters"] == ["http://cache:5000"], "only the fleet cache, not cache.nixos.org"
    # qemu-vm.nix puts a diskSize overlay on make-disk-image's tight image (useBootLoader): only
    # growing the partition and the file system at boot makes the 8 GiB usable by /.
    assert facts["diskSize"] == 8192
    assert facts["growPartition"] is True and facts["rootAutoResize"] is True
    assert facts["activationTimeout"] == 120
    assert facts["variant"] == "v1"
    assert facts["preloaded"] == len(facts["variants"]) - 1, "every variant but cache-pull is preloaded"


def test_each_variant_changes_what_it_says():
    facts = evaluate(r"""{
      names = builtins.mapAttrs (_: v: v.config.environment.etc."ndh-variant".text) variants;
      v2Packages = map (p: p.name) variants.v2.config.environment.systemPackages;
      cutSsh = variants.cut-ssh.config.services.openssh;
      initrd = variants.new-initrd.config.boot.initrd.kernelModules;
      failing = builtins.attrNames variants.failing-activation.config.systemd.services;
      seedShell = variants.seed-shell.config.users.users.deploy.shell;
      seedSudo = variants.seed-sudo.config.security.sudo.extraRules;
      seedUser = {
        shell = variants.seed-deploy-user.config.users.users.deploy.shell;
        rules = builtins.length variants.seed-deploy-user.config.security.sudo.extraRules;
      };
      v1SameAsBooted = variants.v1.config.environment.etc == config.environment.etc;
      v1Rules = builtins.length variants.v1.config.security.sudo.extraRules;
      signed = {
        trust = variants.signed-closures.config.homelab.users.deploy.trust;
        keys = variants.signed-closures.config.homelab.users.deploy.closureSigningKeys;
        v2Trust = variants.signed-v2.config.homelab.users.deploy.trust;
        v2 = variants.signed-v2.config.environment.etc."ndh-variant".text;
        ciKey = (import (/. + "@KEYS@")).ci.publicKey;
      };
      assertions = builtins.mapAttrs (_: v: map (a: a.message) (builtins.filter (a: !a.assertion) v.config.assertions)) variants;
    }""".replace("@KEYS@", str(REPO / "test" / "fleet" / "keys")))
    assert facts["names"]["v2"] == "v2" and facts["names"]["v1"] == "v1"
    assert facts["names"]["seed-deploy-user"] == "seed-deploy-user"
    assert facts["v2Packages"] == ["hello-2.12"]
    assert facts["cutSsh"]["openFirewall"] is False
    assert facts["initrd"] == ["dummy"]
    assert "ndh-fails-on-purpose" in facts["failing"]
    assert facts["seedShell"].endswith("/bin/nologin")
    commands = [c["command"] for rule in facts["seedSudo"] if rule["users"] == ["deploy"] for c in rule["commands"]]
    assert commands and all("nix-env" in c or "switch-to-configuration" in c for c in commands)
    assert not any("activate-rs" in c for c in commands)
    assert facts["seedUser"]["shell"].endswith("/bin/nologin") and facts["seedUser"]["rules"] == 2
    assert facts["v1SameAsBooted"]
    assert facts["v1Rules"] == 1, "the fixed module's single deploy rule"
    assert facts["signed"]["trust"] == facts["signed"]["v2Trust"] == "signed-closures"
    assert facts["signed"]["keys"] == [facts["signed"]["ciKey"]] and facts["signed"]["ciKey"].startswith("ndh-test-ci-1:")
    assert facts["signed"]["v2"] == "signed-v2"
    assert all(messages == [] for messages in facts["assertions"].values()), facts["assertions"]


def test_the_secret_variants_use_the_fixed_test_host_key():
    facts = evaluate("""{
      bootedHasSecrets = config.homelab.secrets.enable;
      nodeExporterOpen = config.homelab.services.monitoring.nodeExporter.openFirewall;
      secrets = builtins.mapAttrs (_: v: {
        inherit (v.config.sops) secrets validateSopsFiles;
        enabled = v.config.homelab.secrets.enable;
        keys = v.config.sops.age.sshKeyPaths;
        gnupgKeys = v.config.sops.gnupg.sshKeyPaths;
        file = v.config.sops.defaultSopsFile;
        user = v.config.users.users.ndh-secret-reader.isSystemUser;
        expected = v.config.environment.etc."ndh-secret-sha256".source;
        variant = v.config.environment.etc."ndh-variant".text;
        services = builtins.attrNames v.config.systemd.services;
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) v.config.assertions);
      }) { inherit (variants) secret-a secret-b-failing; };
    }""")
    assert facts["bootedHasSecrets"] is False, "the booted system (v1) has no secret: the host key comes first"
    assert facts["nodeExporterOpen"] is True
    a, b = facts["secrets"]["secret-a"], facts["secrets"]["secret-b-failing"]
    for variant in (a, b):
        assert variant["failed"] == []
        assert variant["enabled"] is True, "declaring the secret turns homelab.secrets on"
        assert variant["keys"] == ["/etc/ssh/ssh_host_ed25519_key"] and variant["gnupgKeys"] == []
        assert variant["validateSopsFiles"] is False
        assert variant["user"] is True
        # sops-nix's own option values: its defaults, and the group looked up from the owner.
        assert variant["secrets"] == {"ndh-test-secret": {
            "name": "ndh-test-secret", "key": "ndh-test-secret", "path": "/run/secrets/ndh-test-secret",
            "owner": "ndh-secret-reader", "uid": 0, "group": "ndh-secret-reader", "gid": 0, "mode": "0440",
            "format": "binary", "sopsFile": variant["file"], "sopsFileHash": "", "restartUnits": [],
            "reloadUnits": [], "neededForUsers": False}}
    assert a["file"].endswith("-called-encrypted.nix-a/secret.sops")
    assert b["file"].endswith("-called-encrypted.nix-b/secret.sops")
    assert a["expected"].endswith("-a/plaintext.sha256") and b["expected"].endswith("-b/plaintext.sha256")
    assert (a["variant"], b["variant"]) == ("secret-a", "secret-b-failing")
    assert "ndh-fails-on-purpose" in b["services"] and "ndh-fails-on-purpose" not in a["services"]


def test_the_test_fleet_never_puts_the_host_s_private_key_into_nix():
    """A path to the private test host key in any Nix file would copy it into a store."""
    import re

    for path in [*(REPO / "test").rglob("*.nix"), *(REPO / "modules").rglob("*.nix")]:
        # A path literal (./…, ../…), bare or interpolated; a string naming it is no copy.
        assert not re.search(r"(?<![\w\"/-])\.{1,2}/[\w./-]*target-host-ed25519(?![.\w-])", path.read_text()), \
            f"{path.relative_to(REPO)} refers to the private test host key"


CACHE_NODES = """{ networking.hostName = "cache"; _module.args.nodes = {
  target = { homelab.users.deploy.enable = true; homelab.deploy.targetHost = "target";
             homelab.services.monitoring = { enable = true; nodeExporter.port = 9100; }; };
  target2 = { homelab.users.deploy.enable = true; homelab.deploy.targetHost = "target2";
              homelab.services.monitoring = { enable = true; nodeExporter.port = 9100; }; };
}; }"""


def test_the_cache_node_is_the_fleet_s_prometheus():
    facts = evaluate("""{
      inherit (r) failedAssertions;
      prometheus = config.services.prometheus;
      rules = builtins.fromJSON (builtins.head config.services.prometheus.ruleFiles).text;
    }""", node="cache.nix", extra=CACHE_NODES)
    assert facts["failedAssertions"] == []
    (job,) = facts["prometheus"]["scrapeConfigs"]
    assert [(g["labels"]["instance"], g["targets"]) for g in job["static_configs"]] == [
        ("target", ["target:9100"]), ("target2", ["target2:9100"])]
    assert facts["prometheus"]["globalConfig"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    rules = {rule["alert"]: rule["for"] for rule in facts["rules"]["groups"][0]["rules"]}
    assert rules["NixosRebootPending"] == rules["NixosTestDeploymentActive"] == "20s"
