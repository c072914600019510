"""`pytest scenarios/` on a machine that cannot run NixOS VMs: every scenario is collected with
its markers, the header names the tier and why, and each NixOS scenario skips with the exact
reason, quickly (issue 4, "Tests that run here"). Runs pytest in a subprocess, as a user would."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from nixos_testlib import REPO
from support import path_without, require

SCENARIO_FILES = [
    "test_switch.py", "test_test_branch.py", "test_magic_rollback.py", "test_auto_rollback.py",
    "test_boot.py", "test_cache_pull.py", "test_deploy_user.py", "test_monitoring.py",
    "test_secrets.py", "test_prometheus_alerts.py", "test_signed_closures.py",
    "regressions/test_seed_deploy_user.py", "regressions/test_test_branch_rollbacks.py",
]


def pytest_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )


def test_collect_only_lists_every_scenario_with_its_markers():
    result = pytest_run("scenarios", "--collect-only", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = re.findall(r"^(scenarios/\S+)  \[([^\]]*)\]$", result.stdout, re.MULTILINE)
    files = {nodeid.split("::")[0] for nodeid, _ in listed}
    assert {f"scenarios/{name}" for name in SCENARIO_FILES} <= files
    nixos = [(nodeid, marks) for nodeid, marks in listed if "nixos" in marks]
    assert len(nixos) >= 14
    for nodeid, marks in nixos:
        assert "fleet" in marks, nodeid
    regression = [marks for nodeid, marks in listed if "/regressions/" in nodeid]
    assert len(regression) == 6 and all("regression" in marks for marks in regression)
    # Only the seed's deploy-user bugs are still reproduced; the test-branch rollbacks are fixed.
    assert sum("xfail" in marks for marks in regression) == 2




def test_without_nix_each_nixos_scenario_skips_saying_so(tmp_path):
    env = {**os.environ, "PATH": path_without(tmp_path / "bin", "nix")}
    result = pytest_run("scenarios", "-m", "nixos", "-rs", "-q", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = re.findall(r"^SKIPPED \[(\d+)\] .*?: (.*)$", result.stdout, re.MULTILINE)
    assert skipped and sum(int(count) for count, _ in skipped) >= 14, result.stdout
    assert all(reason.startswith("no nix: nix is not installed") for _, reason in skipped), skipped


def test_with_this_host_s_nix_the_skip_quotes_nix_s_error(tmp_path):
    require("nix")
    # The nodes come from a flake whose input nix cannot fetch: a closed port on 127.0.0.1.
    # (The repository's own flake would make nix reach for its inputs on the internet; the
    # self-tests never send traffic anywhere but loopback.)
    flake = tmp_path / "fleet"
    flake.mkdir()
    (flake / "flake.nix").write_text(
        '{ inputs.nixpkgs.url = "http://127.0.0.1:9/nixpkgs.tar.gz"; outputs = { self, nixpkgs }: { }; }'
    )
    registry = tmp_path / "registry.json"
    registry.write_text('{"flakes": [], "version": 2}')
    # This host's nix is older than the NixOS tier accepts (2.18): a wrapper reports 2.18 so
    # that the build itself runs, with this nix, and fails for the reason under test.
    wrapper = tmp_path / "bin" / "nix"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "nix (Nix) 2.18.0"; exit 0; }}\n'
                       f'exec {shutil.which("nix")} "$@"\n')
    wrapper.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}",
        NDH_FLAKE=f"path:{flake}",
        NIX_CONFIG=f"substituters =\nflake-registry = {registry}\ndownload-attempts = 1\n",
    )
    result = pytest_run("scenarios", "-m", "nixos", "-rs", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    header = re.search(r"^scenarios tier: (.*)$", result.stdout, re.MULTILINE)
    assert header and header.group(1).startswith("micro only (nix cannot build"), result.stdout
    skipped = re.findall(r"^SKIPPED \[(\d+)\] .*?: (.*)$", result.stdout, re.MULTILINE)
    assert skipped and sum(int(count) for count, _ in skipped) >= 14, result.stdout
    reasons = {reason for _, reason in skipped}
    # The reason is nix's own first error line, naming what it could not fetch.
    assert all(r.startswith("nix cannot build the NixOS test nodes (") for r in reasons), reasons
    assert all("127.0.0.1:9" in r for r in reasons), reasons
