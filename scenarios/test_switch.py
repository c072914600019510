"""Switch: a normal deploy from main. The new generation is the running system and the boot
default, the profile gained exactly one generation, and the metrics say the same."""
import pytest

from scenario_fleet import NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_switch_makes_the_new_generation_current_and_the_boot_default(homelab):
    before = homelab.baseline("target")
    homelab.deploy_ok("target-v2")

    after = homelab.state("target")
    new = before.newest_generation + 1
    assert after.newest_generation == new
    assert after.profile_generation == new
    assert after.current_generation == new
    assert after.boot_default.number == new, after.boot_default
    # deploy-rs's activate.nixos deletes loader.conf's default line: the newest entry boots.
    assert after.boot_loader.loader_conf_default is None, after.boot_loader.describe()
    assert after.boot_loader.default_system == after.current_system_of
    assert after.boot_loader.entries[0].system == after.current_system_of
    assert after.booted_generation == before.booted_generation, "nothing rebooted"
    assert not after.reboot_pending, after.reboot_reasons
    assert homelab.variant("target") == "v2"
    homelab["target"].succeed("hello")
    homelab.wait_for_metrics("target", after.metrics())


def test_one_deploy_switches_two_targets(homelab):
    homelab.ready()
    before = {node: homelab.state(node) for node in ("target", "target2")}
    homelab.baseline("target", "target2")
    result = homelab.deploy_ok(["target-v2", "target2-v2"])

    assert {node for node, _ in result.activated} == {"target-v2", "target2-v2"}
    for node in ("target", "target2"):
        after = homelab.state(node)
        assert after.newest_generation == max(before[node].newest_generation, 0) + 2
        assert after.current_generation == after.newest_generation == after.boot_default.number
        assert homelab.variant(node) == "v2"
