"""The generation and boot-entry rules of test-branch deploys, with deploy-rs's own activation
scripts on real Nix profiles and a fake ESP, without VMs.

What is real: the profiles' `deploy-rs-activate` scripts, made by deploy-rs's flake.nix
(`lib.activate.nixos` and `lib.activate.custom`) through the fleet's generator
(lib/deploy-nodes.nix and lib/test-branch-activation.nix) and laid out in the store
(stand_in_builds.py: only nixpkgs' writeTextFile and buildEnv stand in); `nix-env` on real
profiles; bash; the harness's probes reading the result. What stands in:

  - activate-rs: `activate` and its rollback (`deactivate`) follow deploy-rs's
    src/bin/activate.rs step by step: `nix-env --set`, run <profile>/deploy-rs-activate with
    PROFILE, BOOT and DRY_ACTIVATE set; on failure (auto rollback) or without confirmation
    (magic rollback) `nix-env --rollback`, delete the newest generation, run the now-current
    generation's deploy-rs-activate with PROFILE only, in the profile's directory;
  - a toplevel's `bin/switch-to-configuration`: `test` makes it current; `boot` rewrites the
    ESP like systemd-boot-builder.py (an entry per generation of the system profile, entries of
    deleted generations removed, loader.conf `default` naming the entry whose toplevel is being
    activated); `switch` does both. A failing toplevel does all that and exits 4.

The old design (test deploys in the system profile, made with the same deploy-rs functions) is
run too: F7 (a rolled-back main deploy after a test branch stays the boot default) and N1
(`deploy --boot` of a test branch switches to the pending system) fail there and hold here.
The same steps on real NixOS VMs: scenarios/regressions/test_test_branch_rollbacks.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import HostShell
from deploy_testlib import StorePaths, require_nix
from stand_in_builds import StandInBuilds
from support.upstream import deploy_rs_src, nixpkgs_lib

from harness import nixos
from harness.nixos import NixosPaths

SWITCH_TO_CONFIGURATION = r"""#!/bin/bash
set -euo pipefail
root=@ROOT@
self=$(dirname "$(dirname "$(readlink -f "$0")")")
echo "$1 ${self##*-}" >> "$root/switch-log"
profiles=$root/nix/var/nix/profiles
entries=$root/boot/loader/entries
install_boot_loader() {
  mkdir -p "$entries"
  gens=()
  for l in "$profiles"/system-*-link; do [ -L "$l" ] || continue; n=${l##*/system-}; gens+=("${n%-link}"); done
  for e in "$entries"/nixos-generation-*.conf; do
    [ -e "$e" ] || continue; n=${e##*/nixos-generation-}; n=${n%.conf}; keep=0
    for g in "${gens[@]}"; do if [ "$g" = "$n" ]; then keep=1; fi; done
    if [ "$keep" = 0 ]; then rm -f "$e"; fi
  done
  default=
  for n in $(printf '%s\n' "${gens[@]}" | sort -n); do
    top=$(dirname "$(readlink -f "$profiles/system-$n-link/nixos-version")")
    printf 'title NixOS\nversion Generation %s\noptions init=%s/init\n' "$n" "$top" > "$entries/nixos-generation-$n.conf"
    if [ "$top" = "$self" ]; then default=nixos-generation-$n.conf; fi
  done
  if [ -n "$default" ]; then printf 'timeout 5\ndefault %s\neditor 0\n' "$default" > "$root/boot/loader/loader.conf"; fi
}
case $1 in
  boot|switch) install_boot_loader ;;
esac
case $1 in
  test|switch) ln -sfn "$self" "$root/run/current-system"; exit @EXIT@ ;;
esac
"""

def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


@dataclass
class Machine:
    """A fake NixOS root with real profiles, and an activate-rs that follows upstream's steps."""

    root: Path
    store: StorePaths
    workdir: Path
    design: str  # "fixed" or "old"
    log: list[str] = field(default_factory=list)

    @property
    def paths(self) -> NixosPaths:
        return NixosPaths.under(str(self.root))

    @property
    def system_profile(self) -> str:
        return f"{self.paths.profiles_dir}/system"

    def _add(self, directory: Path) -> str:
        path = _run("nix-store", "--add", str(directory), check=True).stdout.strip()
        self.store.add(path)
        return path

    def toplevel(self, name: str, *, exit_status: int = 0, initrd: str = "i1") -> str:
        top = self.workdir / f"{name}-{uuid.uuid4().hex[:8]}"
        (top / "bin").mkdir(parents=True)
        (top / "nixos-version").write_text(f"{name} {uuid.uuid4().hex}\n")
        (top / "kernel").write_text("k1\n")
        (top / "initrd").write_text(f"{initrd}\n")
        (top / "init").write_text("")
        script = top / "bin" / "switch-to-configuration"
        script.write_text(
            SWITCH_TO_CONFIGURATION.replace("@ROOT@", str(self.root)).replace("@EXIT@", str(exit_status))
        )
        script.chmod(0o755)
        return self._add(top)

    # -- activate-rs (src/bin/activate.rs) ----------------------------------------------------

    def _script(self, profile: str, env: dict[str, str]) -> int:
        base = {k: v for k, v in os.environ.items() if k not in ("BOOT", "DRY_ACTIVATE", "PROFILE")}
        result = _run(f"{profile}/deploy-rs-activate", env={**base, "PROFILE": profile, **env}, cwd=profile, timeout=120)
        self.log.append(result.stderr)
        return result.returncode

    def deactivate(self, profile: str) -> None:
        _run("nix-env", "-p", profile, "--rollback", check=True)
        generations = _run("nix-env", "-p", profile, "--list-generations", check=True).stdout
        last = generations.splitlines()[-1].split()[0]
        _run("nix-env", "-p", profile, "--delete-generations", last, check=True)
        assert self._script(profile, {}) == 0, "the rollback's re-activation failed:\n" + self.log[-1]

    def activate(self, profile: str, closure: str, *, boot: bool = False, confirmed: bool = True) -> bool:
        """One deploy with auto and magic rollback on; True when it stays."""
        _run("nix-env", "-p", profile, "--set", closure, check=True)
        if self._script(profile, {"DRY_ACTIVATE": "0", "BOOT": "1" if boot else "0"}) != 0:
            self.deactivate(profile)  # auto rollback
            return False
        if not boot and not confirmed:
            self.deactivate(profile)  # magic rollback
            return False
        return True

    # -- what a deploy of each kind does --------------------------------------------------------

    def _deploy(self, design: str, toplevel: str, **kwargs) -> bool:
        profile = StandInBuilds(self.root, self.workdir, self.store).profile(design, toplevel)
        return self.activate(profile.profile_path or self.system_profile, profile.closure, **kwargs)

    def deploy_main(self, toplevel: str, **kwargs) -> bool:
        return self._deploy("main", toplevel, **kwargs)

    def deploy_test(self, toplevel: str, **kwargs) -> bool:
        return self._deploy("old-test" if self.design == "old" else "test", toplevel, **kwargs)

    def reboot(self) -> None:
        """Start what the boot loader chooses; /run starts empty."""
        starting = self.state().boot_loader.default_system
        assert starting, f"nothing to boot: {self.state().boot_loader.describe()}"
        shutil.rmtree(self.root / "run")
        (self.root / "run").mkdir()
        (self.root / "run" / "current-system").symlink_to(starting)
        (self.root / "run" / "booted-system").symlink_to(starting)

    def state(self) -> nixos.SystemState:
        with HostShell("fake", self.workdir / "probe-stderr.log") as shell:
            return nixos.probe_system(shell, self.paths)

    def switches(self) -> list[str]:
        log = self.root / "switch-log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def machine(scratch: Path, store_paths: StorePaths) -> Machine:
    _require_inputs()
    return _machine(scratch, store_paths, "fixed")


def _require_inputs() -> None:
    require_nix()
    nixpkgs_lib()
    deploy_rs_src()


def _machine(scratch: Path, store_paths: StorePaths, design: str) -> Machine:
    root = scratch / "machine"
    (root / "nix/var/nix/profiles").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "boot/loader/entries").mkdir(parents=True)
    workdir = scratch / "src"
    workdir.mkdir()
    return Machine(root, store_paths, workdir, design)


@pytest.fixture
def old_design(scratch: Path, store_paths: StorePaths) -> Machine:
    _require_inputs()
    return _machine(scratch, store_paths, "old")


def _booted_main(machine: Machine) -> str:
    """A host whose last main deploy (v1) runs and is the boot default."""
    v1 = machine.toplevel("v1")
    assert machine.deploy_main(v1)
    machine.reboot()
    return v1


# --- the promise ---------------------------------------------------------------------------


def test_a_test_branch_runs_now_leaves_the_system_profile_alone_and_is_gone_after_a_reboot(machine):
    v1 = _booted_main(machine)
    before = machine.state()
    v2 = machine.toplevel("v2")
    assert machine.deploy_test(v2)

    during = machine.state()
    assert during.current_system_of == v2
    assert during.running_test_generation != -1 and during.current_generation == -1
    assert during.generations == before.generations and during.profile_link == before.profile_link
    assert during.boot_loader == before.boot_loader
    assert during.boot_loader.default_system == v1
    assert not during.boot_loader.entries_for(v2), "a test branch never gets a boot entry"

    machine.reboot()
    after = machine.state()
    assert after.booted_system_of == after.current_system_of == v1
    assert [line.split()[0] for line in machine.switches()] == ["switch", "test"]


@pytest.mark.parametrize("kind", ["auto", "magic"])
def test_a_rolled_back_main_deploy_after_a_test_branch_boots_the_last_main_deploy(machine, kind):
    v1 = _booted_main(machine)
    assert machine.deploy_test(machine.toplevel("v2"))
    failed = machine.toplevel("failed", exit_status=4 if kind == "auto" else 0)
    assert not machine.deploy_main(failed, confirmed=(kind == "auto"))

    state = machine.state()
    loader = state.boot_loader
    assert loader.default_system == v1, loader.describe()
    assert not loader.entries_for(failed), loader.describe()
    assert state.current_system_of == v1, "the rollback re-runs the last main deploy's switch"
    assert state.newest_generation == 1
    machine.reboot()
    assert machine.state().booted_system_of == v1


@pytest.mark.parametrize("kind", ["auto", "magic"])
def test_f7_the_old_design_boots_what_was_rolled_back(old_design, kind):
    """F7 with deploy-rs's own scripts: test deploys in the system profile."""
    machine = old_design
    _booted_main(machine)
    assert machine.deploy_test(machine.toplevel("v2"))
    failed = machine.toplevel("failed", exit_status=4 if kind == "auto" else 0)
    assert not machine.deploy_main(failed, confirmed=(kind == "auto"))
    loader = machine.state().boot_loader
    assert loader.default_system == failed, loader.describe()
    if kind == "auto":
        assert loader.loader_conf_default == "nixos-generation-3.conf"
    else:
        assert loader.loader_conf_default is None  # newest entry: the failed one


def test_a_refused_boot_deploy_of_a_test_branch_changes_nothing(machine):
    v1 = _booted_main(machine)
    pending = machine.toplevel("new-initrd", initrd="i2")
    assert machine.deploy_main(pending, boot=True)
    before = machine.state()
    assert (before.current_system_of, before.boot_loader.default_system) == (v1, pending)

    assert not machine.deploy_test(machine.toplevel("v2"), boot=True)
    after = machine.state()
    assert after.current_system_of == v1
    assert after.generations == before.generations
    assert after.boot_loader == before.boot_loader
    assert not [line for line in machine.switches() if line.startswith(("switch", "boot"))][2:]
    machine.reboot()
    assert machine.state().booted_system_of == pending


def test_n1_the_old_design_switches_on_a_refused_boot_deploy(old_design):
    """N1 with deploy-rs's own scripts: the rollback re-runs the previous generation without BOOT."""
    machine = old_design
    _booted_main(machine)
    pending = machine.toplevel("new-initrd", initrd="i2")
    assert machine.deploy_main(pending, boot=True)
    assert not machine.deploy_test(machine.toplevel("v2"), boot=True)
    assert machine.state().current_system_of == pending
    assert machine.switches()[-1].startswith("switch ")


@pytest.mark.parametrize("kind", ["auto", "magic"])
def test_a_failed_test_deploy_returns_to_what_ran_before_without_touching_the_boot_loader(machine, kind):
    v1 = _booted_main(machine)
    v2 = machine.toplevel("v2")
    assert machine.deploy_test(v2)
    loader = machine.state().boot_loader
    broken = machine.toplevel("broken", exit_status=4 if kind == "auto" else 0)
    assert not machine.deploy_test(broken, confirmed=(kind == "auto"))

    state = machine.state()
    assert state.current_system_of == v2, "back to the test branch that ran before"
    assert state.boot_loader == loader
    # v1's switch, then only `test`: v2, the broken one, and the rollback back to v2.
    assert [line.split()[0] for line in machine.switches()] == ["switch", "test", "test", "test"]
    machine.reboot()
    assert machine.state().booted_system_of == v1


def test_the_first_test_deploy_can_roll_back(machine):
    """An empty test profile: deploy-rs's `nix-env --rollback` needs a generation below."""
    v1 = _booted_main(machine)
    assert not machine.deploy_test(machine.toplevel("cuts-ssh"), confirmed=False)
    state = machine.state()
    assert state.current_system_of == v1
    assert [g.number for g in state.test_generations] == [2], "only the return closure stays"


def test_without_a_record_a_rollback_returns_to_the_last_main_deploy(machine):
    """No running system to record (the return point is removed): the system profile."""
    v1 = _booted_main(machine)
    assert machine.deploy_test(machine.toplevel("v2"))
    machine.reboot()
    (machine.root / "run" / "current-system").unlink()
    assert not machine.deploy_test(machine.toplevel("broken", exit_status=4))
    assert machine.state().current_system_of == v1
