"""scenarios/twins/ where twins cannot boot: every scenario SKIPS with the exact reason, and the
scenarios' verdict still fails a run in which nothing ran (exit 5), unless asked (-m twins).
Runs pytest in a subprocess, as a user would; nothing is built or booted."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import path_without

REPO = Path(__file__).resolve().parents[2]
NOTHING_RAN = 5
SCENARIOS = 6


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "scenarios/twins", "-q", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)




@pytest.fixture
def env(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NDH_", "PYTEST_"))}
    clean.update(NDH_CACHE_DIR=str(tmp_path / "cache"), NDH_STATE_DIR=str(tmp_path / "state"))
    return clean


def test_without_nix_every_twin_scenario_skips_naming_it_and_the_run_fails(env, tmp_path):
    env["PATH"] = path_without(tmp_path / "bin", "nix")
    result = run(env, "--vm-accel=tcg")
    assert result.returncode == NOTHING_RAN, result.stdout + result.stderr
    assert f"[scenarios] {SCENARIOS} skipped: NixOS twins cannot boot here: nix is not installed" in result.stdout
    assert result.stdout.rstrip().endswith("to accept one)"), result.stdout


def test_this_machine_s_old_nix_is_the_reason(env):
    from harness import nix

    found = shutil.which("nix")
    if found is None or nix.too_old(found) is None:
        pytest.skip("needs a nix older than 2.18 on PATH (Debian's nix-bin)")
    result = run(env, "--vm-accel=tcg")
    assert result.returncode == NOTHING_RAN
    assert f"[scenarios] {SCENARIOS} skipped: NixOS twins cannot boot here: nix" in result.stdout
    assert "is older than 2.18" in result.stdout and "--accel tcg" not in result.stdout


def test_selecting_them_with_m_accepts_the_skips(env, tmp_path):
    env["PATH"] = path_without(tmp_path / "bin", "nix")
    result = run(env, "-m", "twins", "--vm-accel=tcg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{SCENARIOS} skipped" in result.stdout
