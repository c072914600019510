"""Test branch (`test-<host>`): the test profile activates the new configuration now and leaves
the boot loader alone, so a reboot returns to the previous generation. deploy-rs still records
the test configuration as the newest profile generation (its `nix-env --set`): docs/generations.md,
"Test branches and generations"."""
import pytest

from scenario_fleet import NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_test_branch_runs_now_and_is_gone_after_a_reboot(homelab):
    base = homelab.baseline("target")
    previous = base.current_generation
    homelab.deploy_ok("target-v2", test_branch=True)

    during = homelab.state("target")
    assert during.current_generation == previous + 1 == during.newest_generation
    assert during.profile_generation == previous + 1, "deploy-rs's nix-env --set moved the profile"
    assert during.boot_default.number == previous, "switch-to-configuration test never touches the boot loader"
    assert homelab.variant("target") == "v2"
    homelab.wait_for_metrics("target", during.metrics())

    homelab["target"].reboot()
    homelab.ready()
    after = homelab.state("target")
    assert after.booted_generation == previous
    assert after.current_generation == previous
    assert homelab.variant("target") == "v1"
    # What operators must know: the test configuration is still the newest generation.
    assert after.newest_generation == previous + 1
    assert after.profile_generation == previous + 1
    homelab.wait_for_metrics("target", after.metrics())
