"""The fleet's promise through every rollback path and `--boot`: a test branch is active now and
gone after a reboot, and a reboot always returns to the last `main` deploy (docs/deploy-rules.md).

Two bugs of the fleet's earlier design, which put test deploys into the system profile (serokell/deploy-rs
src/bin/activate.rs: a rollback re-runs the previous generation's deploy-rs-activate without
BOOT; nixpkgs systemd-boot-builder.py: only `switch`/`boot` rewrite loader.conf and the entries):

  1. push `test-<Host>`, then merge a change to `main` that fails and rolls back. The previous
     generation is the test one, whose rollback only runs `switch-to-configuration test`, so the
     boot loader is never rewritten:
       auto rollback   loader.conf keeps `default nixos-generation-<failed>.conf`;
       magic rollback  activate.nixos already deleted the default line, so systemd-boot starts
                       the newest entry: the failed one.
     The next reboot boots what was rolled back (here: the configuration that cut SSH).
  2. `deploy --boot` of a test branch: the profile refuses with exit 1 after activate-rs's
     `nix-env --set`; the automatic rollback re-runs the previous generation without BOOT, a
     full `switch`: the pending `--boot` deploy becomes active now.

The fix (lib/test-branch-activation.nix): test deploys have a profile of their own, and a
rollback of one runs its return closure (`switch-to-configuration test` of what ran before).
Each scenario proves on the target what boots after the reboot: the running and booted
generation, the variant (/etc/ndh-variant), loader.conf's default and the entries on the ESP.

Runs only on a NixOS test fleet (nix builds the nodes of test/vm-test.nix, KVM or
--vm-accel=tcg): the real deploy-rs, switch-to-configuration and systemd-boot. Without them it
skips. The same rules run here without VMs against real Nix profiles, the real test-branch
scripts and a fake ESP: tests/deploy/test_deploy_rollback_rules.py.
"""
import pytest

from scenario_fleet import NIXOS_FLEET, tail

pytestmark = [pytest.mark.nixos, pytest.mark.regression, pytest.mark.fleet(NIXOS_FLEET)]


class BugReproduced(AssertionError):
    """The target would boot, or runs, something the promise rules out."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BugReproduced(message)


@pytest.mark.parametrize(("kind", "variant"), [("auto", "failing-activation"), ("magic", "cut-ssh")])
def test_a_reboot_after_a_rolled_back_main_deploy_boots_the_last_main_deploy(homelab, kind, variant):
    base = homelab.baseline("target")  # the last main deploy: v1, generation N
    main_system = base.current_system_of
    failed_system = homelab.toplevel(f"target-{variant}")

    homelab.deploy_ok("target-v2", test_branch=True)  # push test-target
    assert homelab.variant("target") == "v2"

    result = homelab.deploy(f"target-{variant}")  # merge to main: fails and rolls back
    assert not result.ok, f"the {kind}-rollback deploy of {variant} succeeded:\n{tail(result.log)}"
    # The target rolls back on its own clock (confirmTimeout), maybe after deploy returned.
    rolled_back = homelab.wait_for_state(
        "target",
        lambda s: s.current_system_of != failed_system
        and all(g.system != failed_system for g in s.generations),
        timeout=240,
        what=f"did not roll back the failed {variant} deploy",
    )
    loader = rolled_back.boot_loader
    expect(
        loader.default_system == main_system,
        f"after the {kind} rollback the next boot starts {loader.default_system}, not the last "
        f"main deploy {main_system}: {loader.describe()}",
    )
    expect(
        not loader.entries_for(failed_system),
        f"the rolled-back configuration is still on the ESP: {loader.describe()}",
    )

    homelab["target"].reboot()
    homelab.ready()
    after = homelab.state("target")
    assert after.booted_system_of == after.current_system_of == main_system, after
    assert after.booted_generation == after.current_generation == base.current_generation
    assert homelab.variant("target") == "v1"
    assert after.boot_loader.default_system == main_system, after.boot_loader.describe()
    assert not after.boot_loader.entries_for(failed_system), after.boot_loader.describe()
    assert homelab.ssh_answers("target")


def test_a_refused_boot_deploy_of_a_test_branch_changes_nothing(homelab):
    base = homelab.baseline("target")  # v1 runs, generation N
    homelab.deploy_ok("target-new-initrd", boot=True)  # main --boot: N+1 waits for the reboot
    pending = homelab.state("target")
    assert pending.boot_default.number == base.current_generation + 1
    assert homelab.variant("target") == "v1"

    result = homelab.deploy("target-v2", test_branch=True, boot=True)
    assert not result.ok, f"--boot of a test branch was not refused:\n{tail(result.log)}"

    after = homelab.state("target")
    expect(
        after.current_system_of == pending.current_system_of,
        f"the refused deploy activated {after.current_system_of} "
        f"(variant {homelab.variant('target')}); {pending.current_system_of} ran before",
    )
    expect(homelab.variant("target") == "v1", "the refused deploy changed the running variant")
    assert [(g.number, g.system) for g in after.generations] == [
        (g.number, g.system) for g in pending.generations
    ], "the system profile must not change"
    assert after.boot_loader.default_system == pending.boot_loader.default_system, after.boot_loader.describe()
    assert after.boot_loader.entry_files == pending.boot_loader.entry_files

    homelab["target"].reboot()
    homelab.ready()
    rebooted = homelab.state("target")
    assert rebooted.booted_generation == rebooted.current_generation == base.current_generation + 1
    assert homelab.variant("target") == "new-initrd"
    assert rebooted.boot_loader.default_system == pending.boot_loader.default_system
