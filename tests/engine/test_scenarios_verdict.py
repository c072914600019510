"""`pytest scenarios/` is no false green: a run in which no scenario ran says so in its last line
and exits 5, unless that is what was asked for (-m, -k, --allow-no-scenarios); --require-nixos
fails a run in which only the micro pre-flight ran. And the pre-flight runs wherever a micro image
can be had, here one already in the cache, with neither Debian's package tools nor nix on PATH
(as on NixOS without the flake's app). Runs pytest in a subprocess, as a user would; without
nix on PATH nothing reaches for the network."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.images import micro
from support import path_without, scratch_dir

REPO = Path(__file__).resolve().parents[2]
NOTHING_RAN = 5




@pytest.fixture
def bare_host(tmp_path):
    """The environment of a user without apt, dpkg or nix, with an empty cache and a state root
    of this run."""
    state = scratch_dir("verdict")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NDH_", "PYTEST_"))}
    env.update(PATH=path_without(tmp_path / "path", "apt", "dpkg", "nix"), NDH_CACHE_DIR=str(tmp_path / "cache"),
               NDH_STATE_DIR=str(state), NDH_DISK_AIO="threads")
    yield env
    shutil.rmtree(state, ignore_errors=True)


def scenarios(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "scenarios", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.rstrip("\n").rsplit("\n", 1)[-1]


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_run_in_which_no_scenario_ran_fails_and_says_so_last(bare_host, xdist):
    result = scenarios(bare_host, "-q", *xdist)  # under xdist, the controller judges the workers' reports
    assert result.returncode == NOTHING_RAN, result.stdout + result.stderr
    assert re.fullmatch(
        r"no scenario ran \(\d+ skipped, for the reasons above\); exit status 5: a run that tests nothing "
        r"fails \(select scenarios with -m or -k, or pass --allow-no-scenarios, to accept one\)",
        last_line(result)), result.stdout
    # The reasons, once each, above it: the micro image that is nowhere, and nix that is missing.
    assert re.search(r"^\[scenarios\] 2 skipped: pre-flight needs the micro image: .*none in the cache", result.stdout, re.M)
    assert re.search(r"^\[scenarios\] \d+ skipped: no nix: nix is not installed", result.stdout, re.M)


@pytest.mark.parametrize("args, asked", [
    (("--allow-no-scenarios",), "--allow-no-scenarios"),
    (("-m", "nixos"), "-m"),
    (("-k", "switch"), "-k"),
])
def test_a_run_that_asked_for_it_exits_0_and_still_says_so(bare_host, args, asked):
    result = scenarios(bare_host, "-q", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(rf"no scenario ran \(\d+ skipped, for the reasons above\); exit status 0, as {asked} asked",
                        last_line(result)), result.stdout


def test_require_nixos_is_not_met_by_an_asked_for_selection(bare_host):
    result = scenarios(bare_host, "-q", "-m", "nixos", "--require-nixos")
    assert result.returncode == NOTHING_RAN, result.stdout + result.stderr
    assert re.fullmatch(r"no scenario ran \(\d+ skipped, for the reasons above\); exit status 5: "
                        r"--require-nixos asks for NixOS scenarios", last_line(result)), result.stdout


def test_collect_only_runs_nothing_and_is_no_failure(bare_host):
    result = scenarios(bare_host, "-q", "--collect-only")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no scenario ran" not in result.stdout


def test_without_apt_dpkg_or_nix_the_preflight_runs_on_the_image_in_the_cache(bare_host, tmp_path):
    """Boots the two pre-flight nodes. The NixOS scenarios skip (no nix), so --require-nixos
    fails the run, last, for that reason."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: the pre-flight cannot boot")
    try:  # the user's image (cache, or $NDH_MICRO_IMAGE), had here as in every micro-VM test
        image = micro.ensure_micro_image()
    except micro.MicroImageError as exc:
        pytest.skip(f"no micro image on this host to put in the cache: {exc}")
    cached = Path(bare_host["NDH_CACHE_DIR"]) / "micro-image" / "key"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(image.directory)
    result = scenarios(bare_host, "-rA", "--vm-accel=tcg", "--require-nixos")
    out = result.stdout + result.stderr
    assert f"[scenarios] micro image: the one already in the cache, {cached} (no micro image: " in out
    assert re.search(r"^PASSED scenarios/test_preflight.py::test_vms_boot_and_reach_each_other_by_name$", out, re.M), out
    assert re.search(r"^PASSED scenarios/test_preflight.py::test_snapshot_restore_undoes_a_change$", out, re.M), out
    assert result.returncode == NOTHING_RAN, out
    assert re.fullmatch(r"no NixOS scenario ran \(\d+ skipped, for the reasons above\); exit status 5: "
                        r"--require-nixos asks for NixOS scenarios", last_line(result)), out
