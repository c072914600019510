"""test/fleet/nodes/target.nix and its variants, evaluated with nixpkgs' lib and the homelab
modules (tests/fleet/module-eval.nix plus target-eval-stub.nix): the variants are this node
extended with one module each, they override what they mean to, and their closures (all but
cache-pull's) are preloaded. Needs NIXPKGS_LIB, like tests/fleet's module tests."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nixos_testlib import REPO, require

HERE = Path(__file__).resolve().parent


# What nixpkgs' nixos/modules/config/nix.nix adds to every NixOS system (mkAfter).
NIXPKGS_DEFAULT_CACHE = '{ lib, ... }: { nix.settings.substituters = lib.mkAfter [ "https://cache.nixos.org/" ]; }'


def evaluate(select: str):
    lib = os.environ.get("NIXPKGS_LIB")
    if not lib:
        pytest.skip("NIXPKGS_LIB is not set: point it at a nixpkgs lib directory to evaluate the NixOS modules")
    require("nix-instantiate")
    p = lambda path: f"(/. + {json.dumps(str(path))})"  # noqa: E731
    expr = (
        f"let lib = import {p(lib)}; "
        f"stub = import {p(HERE / 'target-eval-stub.nix')} {{ inherit lib; fakeNixpkgs = {p(HERE / 'fake-nixpkgs')}; }}; "
        f"r = import {p(REPO / 'tests' / 'fleet' / 'module-eval.nix')} {{ inherit lib; "
        f"modules = [ stub {p(REPO / 'test' / 'fleet' / 'nodes' / 'target.nix')} {{ networking.hostName = \"target\"; }} "
        f"({NIXPKGS_DEFAULT_CACHE}) ]; }}; "
        f"config = r.config; variants = config.homelabTest.variants; in {select}"
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
    assert facts["diskSize"] == 8192
    assert facts["activationTimeout"] == 120
    assert facts["variant"] == "v1"
    assert facts["preloaded"] == len(facts["variants"]) - 1, "every variant but cache-pull is preloaded"


def test_each_variant_changes_what_it_says():
    facts = evaluate("""{
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
      assertions = builtins.mapAttrs (_: v: map (a: a.message) (builtins.filter (a: !a.assertion) v.config.assertions)) variants;
    }""")
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
    assert all(messages == [] for messages in facts["assertions"].values()), facts["assertions"]
