"""`deploy --boot` with a new initrd: nothing changes now, the next boot does; the reboot-pending
metric is 1 until the target reboots into the new generation, then 0."""
import pytest

from harness.nixos import entry_id
from scenario_fleet import NIXOS_FLEET

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_boot_deploy_changes_only_the_next_boot(homelab):
    base = homelab.baseline("target")
    previous = base.current_generation
    result = homelab.deploy_ok("target-new-initrd", boot=True)
    assert result.activated_for_next_boot

    pending = homelab.state("target")
    assert pending.current_generation == previous
    assert pending.newest_generation == previous + 1
    assert pending.boot_default.number == previous + 1, pending.boot_default
    # activate.nixos's boot branch keeps loader.conf's default line (only switch deletes it).
    new_initrd = homelab.toplevel("target-new-initrd")
    assert pending.boot_loader.default_system == new_initrd, pending.boot_loader.describe()
    loader = pending.boot_loader
    assert loader.loader_conf_default and entry_id(loader.loader_conf_default) == entry_id(loader.default_entry)
    assert pending.reboot_pending
    assert any(reason.startswith("initrd:") for reason in pending.reboot_reasons)
    assert homelab.variant("target") == "v1"
    homelab.wait_for_metrics("target", {**pending.metrics(), "nixos_reboot_pending": 1})

    homelab["target"].reboot()
    homelab.ready()
    booted = homelab.state("target")
    assert booted.booted_generation == booted.current_generation == previous + 1
    assert booted.boot_default.number == previous + 1
    assert not booted.reboot_pending
    assert homelab.variant("target") == "new-initrd"
    homelab.wait_for_metrics("target", {**booted.metrics(), "nixos_reboot_pending": 0})
