"""First contact on a user's machine: `pytest scenarios/` with a stand-in `nix` that records
every call (so "no build" is checked, not assumed), with Debian's package tools removed from
PATH (as on NixOS, Fedora, Arch), with a Nix too old for current nixpkgs, and with
--collect-only or `-m preflight`, which must build, probe and download nothing they do not need.
Runs pytest in a subprocess, as a user would."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from harness.images import micro
from nixos_testlib import REPO
from support import path_without, scratch_dir

NIXOS_SCENARIOS_AT_LEAST = 14
# The tests of scenarios/test_preflight.py (marker `preflight`), as JUnit names them.
PREFLIGHT_TESTS = ("scenarios.test_preflight::test_vms_boot_and_reach_each_other_by_name",
                   "scenarios.test_preflight::test_snapshot_restore_undoes_a_change")


def pytest_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)




def stand_in_nix(tmp_path: Path, version: str) -> tuple[Path, Path]:
    """A `nix` that reports `version`, records each call, and "builds" NixOS nodes as
    directories holding a `bin/run-<node>-vm` script (never run: the tests stop before boot)."""
    bin_dir = tmp_path / "nix-bin"
    bin_dir.mkdir()
    calls = tmp_path / "nix-calls"
    outputs = tmp_path / "nix-outputs"
    (bin_dir / "nix").write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        printf '%s\\n' "$*" >> {calls}
        [ "$1" = --version ] && {{ echo "nix (Nix) {version}"; exit 0; }}
        while [ "${{1:-}}" = --extra-experimental-features ]; do shift 2; done
        [ "$1 ${{2:-}}" = "build --help" ] && {{ echo "  --print-out-paths"; exit 0; }}
        if [ "$1" = build ]; then
          for arg in "$@"; do
            case "$arg" in
              *'#vmChecks.'*'.nodes.'*'.system.build.vm')
                node=${{arg##*.nodes.}}; node=${{node%%.*}}
                mkdir -p {outputs}/$node/bin
                printf '#!/bin/sh\\nexit 1\\n' > {outputs}/$node/bin/run-$node-vm
                chmod +x {outputs}/$node/bin/run-$node-vm
                echo {outputs}/$node ;;
            esac
          done
          exit 0
        fi
        echo "stand-in nix: unexpected call: $*" >&2
        exit 99
        """))
    (bin_dir / "nix").chmod(0o755)
    return bin_dir, calls


def recorded(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def outcomes(junit: Path) -> dict[str, str]:
    """Every test of a run's JUnit report: "passed", or how it did not pass (skipped, failure, error)."""
    result = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        verdicts = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        result[f"{case.get('classname')}::{case.get('name')}"] = verdicts[0] if verdicts else "passed"
    return result


def skips(stdout: str) -> list[tuple[int, str]]:
    return [(int(n), reason) for n, reason in re.findall(r"^SKIPPED \[(\d+)\] .*?: (.*)$", stdout, re.MULTILINE)]


@pytest.fixture
def user_env(tmp_path):
    """A fresh user: empty cache and state directories, no prebuilt micro image."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NDH_")}
    env["NDH_CACHE_DIR"] = str(tmp_path / "cache")
    state = scratch_dir("fc")  # short, and named by the run's end-of-run leftover check
    env["NDH_STATE_DIR"] = str(state)
    yield env
    shutil.rmtree(state, ignore_errors=True)


def test_a_nix_older_than_2_18_skips_the_nixos_tier_in_one_line_naming_it(tmp_path, user_env):
    nix_bin, calls = stand_in_nix(tmp_path, "2.8.0")
    env = {**user_env, "PATH": f"{nix_bin}{os.pathsep}{user_env['PATH']}"}
    result = pytest_run("scenarios", "-m", "nixos", "-rs", "--vm-accel=tcg", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    header = re.search(r"^scenarios tier: (.*)$", result.stdout, re.MULTILINE)
    assert header and header.group(1).startswith(f"micro only (nix 2.8.0 ({nix_bin}/nix) is older than 2.18"), result.stdout
    found = skips(result.stdout)
    assert sum(n for n, _ in found) >= NIXOS_SCENARIOS_AT_LEAST, result.stdout
    for _, reason in found:
        assert reason.startswith(f"nix 2.8.0 ({nix_bin}/nix) is older than 2.18, which current nixpkgs needs: ")
        assert "install Nix 2.18 or newer" in reason and "\n" not in reason
    assert recorded(calls) == ["--version"]  # checked first: nothing evaluated, nothing built


def test_collect_only_builds_probes_and_downloads_nothing(tmp_path, user_env):
    nix_bin, calls = stand_in_nix(tmp_path, "2.24.0")
    env = {**user_env, "PATH": f"{nix_bin}{os.pathsep}{user_env['PATH']}"}
    result = pytest_run("scenarios", "--collect-only", env=env)  # not -q: the header shows
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded(calls) == []
    cache = Path(user_env["NDH_CACHE_DIR"])
    assert not cache.exists() or not any(cache.iterdir()), list(cache.rglob("*"))  # no image, no verdict
    assert "vm-accel: auto, not probed (--collect-only boots nothing)" in result.stdout
    assert "scenarios tier: not decided (--collect-only builds nothing)" in result.stdout


def test_preflight_alone_builds_no_nixos_node(tmp_path, user_env):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: the pre-flight cannot boot")
    # The user's micro image (the real cache, or $NDH_MICRO_IMAGE), had here first as in every
    # micro-VM test: with it the pre-flight must run, so a skip fails this test.
    micro.ensure_micro_image()
    nix_bin, calls = stand_in_nix(tmp_path, "2.24.0")
    env = {**user_env, "PATH": f"{nix_bin}{os.pathsep}{user_env['PATH']}",
           **{key: os.environ.get(key, "") for key in ("NDH_CACHE_DIR", micro.PREBUILT_ENV)}}
    env = {key: value for key, value in env.items() if value}
    junit = tmp_path / "junit.xml"
    result = pytest_run("scenarios", "-m", "preflight", "-rA", "--vm-accel=tcg", f"--junitxml={junit}",
                        env=env)  # boots micro VMs
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scenarios tier: micro only (no NixOS scenario selected: nothing built)" in result.stdout
    assert outcomes(junit) == {test: "passed" for test in PREFLIGHT_TESTS}, result.stdout
    assert recorded(calls) == []


def test_without_debian_tools_the_preflight_skip_says_exactly_why(tmp_path, user_env):
    # Without nix too: a nix >= 2.18 would build the flake's micro image, and the pre-flight run.
    env = {**user_env, "PATH": path_without(tmp_path / "path", "apt", "dpkg", "nix")}
    result = pytest_run("scenarios", "-m", "preflight", "-rs", "--vm-accel=tcg", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    found = skips(result.stdout)
    assert sum(n for n, _ in found) == 2, result.stdout
    for _, reason in found:
        assert reason.startswith(
            "pre-flight needs the micro image: no micro image: NDH_MICRO_IMAGE is not set and the "
            "Debian recipe needs apt-cache, apt-get, dpkg-deb, dpkg-query (not on PATH): use the "
            "Nix-built image: `nix run .#scenarios`"), reason


def test_without_debian_tools_the_tier_rests_on_a_real_kvm_boot_or_an_exact_reason(tmp_path, user_env):
    """Nix "builds" the nodes (stand-in), so the tier comes down to the KVM probe, which has
    no micro image here: its verdict comes from a boot sector run under QEMU's BIOS."""
    nix_bin, calls = stand_in_nix(tmp_path, "2.24.0")
    env = {**user_env, "PATH": f"{nix_bin}{os.pathsep}{path_without(tmp_path / 'path', 'apt', 'dpkg', 'nix')}"}
    result = pytest_run("scenarios", "-m", "nixos", "-rs", "--vm-accel=auto", env=env)
    header = re.search(r"^scenarios tier: (.*)$", result.stdout, re.MULTILINE)
    assert header, result.stdout + result.stderr
    assert any(call.startswith("--extra-experimental-features nix-command flakes build") for call in recorded(calls))
    kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if not kvm_usable:
        assert header.group(1).startswith("micro only (no working KVM (auto: no /dev/kvm"), header.group(1)
        return
    tier = header.group(1)
    if tier.startswith("nixos (kvm)"):  # KVM runs guest code here: say how that was found
        assert "a KVM guest ran (boot sector under QEMU's BIOS, -cpu max; micro image not tried: no micro image" in tier
        assert result.returncode != 0  # the stand-in's node scripts cannot boot: the scenarios fail
    else:
        assert tier.startswith("micro only (no working KVM (auto: /dev/kvm exists but a KVM guest "
                               "(a boot sector under QEMU's BIOS, -cpu max) "), tier
        assert re.search(r"\) (failed: QEMU (exited with status|was killed by)|hung: )", tier), tier
        assert result.returncode == 0, result.stdout + result.stderr
        assert sum(n for n, _ in skips(result.stdout)) >= NIXOS_SCENARIOS_AT_LEAST
    # A real verdict is cached for the next run.
    assert list(Path(user_env["NDH_CACHE_DIR"]).glob("accel-*.json"))


def test_under_tcg_the_nixos_tier_scales_the_boot_and_every_other_wait(tmp_path, user_env):
    nix_bin, calls = stand_in_nix(tmp_path, "2.24.0")
    env = {**user_env, "PATH": f"{nix_bin}{os.pathsep}{user_env['PATH']}"}
    result = pytest_run("scenarios/test_switch.py", "-x", "--vm-accel=tcg", env=env)
    assert re.search(r"^scenarios tier: nixos \(tcg\) \(nix built 4 NixOS test node", result.stdout, re.MULTILINE), result.stdout
    # The stand-in's node scripts exit at once, so the boot fails; the line before says how long it may take.
    assert "[vm] booting 4 node(s) of fleet nixos-deploy (tcg; waits x5, boot timeout 1500 s)" in result.stdout, result.stdout
    assert result.returncode != 0
