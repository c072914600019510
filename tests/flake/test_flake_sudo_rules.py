"""The deploy user's sudo commands (lib/deploy-sudo-commands.nix) match what deploy-rs runs, and
nothing else that matters.

deploy-rs runs `sudo -u root <closure>/activate-rs ...` and `sudo -u root rm
<tempPath>/deploy-rs-canary-<hash>` where <closure> is /nix/store/<hash>-activatable-<name>
(serokell/deploy-rs src/deploy.rs, src/lib.rs make_lock_path). sudoers matches a wildcard
command path like fnmatch with FNM_PATHNAME (`*` stops at "/"); the canary rule has no `*`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUDO_COMMANDS = REPO / "lib" / "deploy-sudo-commands.nix"
STORE_HASH = "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r"  # 32 characters of Nix's base-32 alphabet
CLOSURE = f"/nix/store/{STORE_HASH}-activatable-nixos-system-Ingress-26.05"


def sudo_commands(temp_path: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix-instantiate not found on PATH: install Nix (e.g. Debian's nix-bin)")
    expr = f"import {json.dumps(str(SUDO_COMMANDS))} {{ tempPath = {json.dumps(temp_path)}; }}"
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=60,
    )


def commands(temp_path: str = "/tmp") -> dict:
    result = sudo_commands(temp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def path_matches(pattern: str, path: str) -> bool:
    """fnmatch with FNM_PATHNAME: wildcards never cross '/'."""
    pattern_parts, path_parts = pattern.split("/"), path.split("/")
    return len(pattern_parts) == len(path_parts) and all(
        fnmatch.fnmatchcase(part, wanted) for part, wanted in zip(path_parts, pattern_parts)
    )


def test_fleet_sudo_allows_activate_rs_of_any_activatable_closure():
    rule = commands()["activate"]
    assert path_matches(rule, f"{CLOSURE}/activate-rs")
    assert not path_matches(rule, f"/nix/store/{STORE_HASH}-nixos-system-Ingress/activate-rs")
    assert not path_matches(rule, f"/nix/store/{STORE_HASH}-activatable-x/sub/activate-rs")
    assert not path_matches(rule, "/tmp/activatable-x/activate-rs")
    assert not path_matches(rule, f"{CLOSURE}/deploy-rs-activate")


@pytest.mark.parametrize("temp_path", ["/tmp", "/var/lib/deploy-rs"])
def test_fleet_sudo_canary_rule_matches_exactly_deploy_rs_canary(temp_path):
    rules = commands(temp_path)["removeCanary"]
    assert rules == [f"/run/current-system/sw/bin/rm {temp_path}/deploy-rs-canary-" + "[0-9a-df-np-sv-z]" * 32]
    rule = rules[0]
    canary = f"{temp_path}/deploy-rs-canary-{STORE_HASH}"  # make_lock_path(temp_path, CLOSURE)
    assert fnmatch.fnmatchcase(f"/run/current-system/sw/bin/rm {canary}", rule)
    for other in [
        f"/run/current-system/sw/bin/rm {canary} /etc/shadow",
        f"/run/current-system/sw/bin/rm -rf {canary}",
        f"/run/current-system/sw/bin/rm {temp_path}/deploy-rs-canary-{STORE_HASH[:-1]}",
        f"/run/current-system/sw/bin/rm {temp_path}/deploy-rs-canary-{STORE_HASH.upper()}",
        f"/run/current-system/sw/bin/rm {temp_path}/deploy-rs-canary-../../../../etc/sudoers",
        f"/run/current-system/sw/bin/rm /etc/deploy-rs-canary-{STORE_HASH}",
    ]:
        assert not fnmatch.fnmatchcase(other, rule), other


@pytest.mark.parametrize(
    ("temp_path", "message"),
    [
        ("tmp", "must be an absolute path"),
        ("/tmp/", "must not end in"),
        ("/tmp/a b", "contains a character sudoers would interpret"),
        ("/tmp/x,y", "contains a character sudoers would interpret"),
    ],
)
def test_fleet_sudo_rejects_temp_paths_it_cannot_express(temp_path, message):
    result = sudo_commands(temp_path)
    assert result.returncode != 0
    assert message in result.stderr


def test_fleet_sudoers_syntax_with_visudo(tmp_path):
    visudo = os.environ.get("VISUDO") or shutil.which("visudo")
    if visudo is None:
        pytest.skip(
            "visudo not found (set VISUDO or install Debian's sudo); NixOS checks the sudoers file with it at build time"
        )
    rules = commands("/tmp")
    # The line nixpkgs' security.sudo renders for our extraRules entry.
    line = "deploy ALL=(root) " + ", ".join(f"NOPASSWD: {c}" for c in rules["all"])
    sudoers = tmp_path / "sudoers"
    sudoers.write_text(line + "\n")
    result = subprocess.run([visudo, "-c", "-f", str(sudoers)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
