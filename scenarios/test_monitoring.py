"""Monitoring: the generation metrics (current, boot, booted, profile, reboot pending) follow a
switch, a test-branch deploy and a reboot by themselves, agree with the probes, and node
exporter serves them."""
import pytest

from scenario_fleet import NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_generation_metrics_follow_switch_test_branch_and_reboot(homelab):
    base = homelab.baseline("target")
    homelab.wait_for_metrics("target", base.metrics())
    n = base.current_generation

    homelab.deploy_ok("target-v2")
    switched = homelab.state("target")
    assert (switched.current_generation, switched.boot_default.number) == (n + 1, n + 1)
    homelab.wait_for_metrics("target", switched.metrics())

    # A test branch with another initrd: running now, not the boot default, no reboot needed
    # (the boot default is still v2, whose initrd is the booted one).
    homelab.deploy_ok("target-new-initrd", test_branch=True)
    testing = homelab.state("target")
    # The test branch runs from its own profile: no system generation runs (current -1).
    assert testing.current_generation == -1 and testing.running_test_generation != -1
    assert testing.profile_generation == testing.boot_default.number == n + 1
    metrics = homelab.wait_for_metrics("target", testing.metrics())
    assert metrics["nixos_reboot_pending"] == 0
    assert metrics["nixos_booted_generation"] == base.booted_generation

    homelab["target"].reboot()
    homelab.ready()
    rebooted = homelab.state("target")
    assert rebooted.booted_generation == rebooted.current_generation == n + 1
    assert rebooted.profile_generation == n + 1
    metrics = homelab.wait_for_metrics("target", rebooted.metrics())

    homelab["target"].wait_for_open_port(9100)
    scraped = homelab.scrape("target")
    for name, value in rebooted.metrics().items():
        assert scraped.get(name) == value, f"node exporter serves {name}={scraped.get(name)}, probe says {value}"
