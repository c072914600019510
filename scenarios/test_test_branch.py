"""Test branch (`test-<host>`): the test profile activates the new configuration now, in a
profile of its own, and leaves the system profile and the boot loader alone, so a reboot returns
to the last main deploy (docs/deploy-rules.md)."""
import pytest

from scenario_fleet import NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_test_branch_runs_now_and_is_gone_after_a_reboot(homelab):
    base = homelab.baseline("target")
    previous = base.current_generation
    homelab.deploy_ok("target-v2", test_branch=True)

    during = homelab.state("target")
    assert during.running_test_generation != -1, "v2 runs from the homelab-test profile"
    assert during.current_generation == -1, "a test branch is no generation of the system profile"
    assert during.newest_generation == during.profile_generation == previous, "the system profile is untouched"
    assert during.boot_default.number == previous, "switch-to-configuration test never touches the boot loader"
    assert during.boot_loader == base.boot_loader, during.boot_loader.describe()
    assert not during.boot_loader.entries_for(during.current_system_of)
    assert homelab.variant("target") == "v2"
    homelab.wait_for_metrics("target", during.metrics())

    homelab["target"].reboot()
    homelab.ready()
    after = homelab.state("target")
    assert after.booted_generation == after.current_generation == previous
    assert homelab.variant("target") == "v1"
    assert after.newest_generation == after.profile_generation == previous
    homelab.wait_for_metrics("target", after.metrics())
