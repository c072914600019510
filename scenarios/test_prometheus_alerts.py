"""Prometheus (the cache node, in the Production role) scrapes the targets' node exporters, its
target list generated from the fleet; the generation alerts follow what the targets really do:
after a `--boot` deploy NixosRebootPending fires, after the reboot it clears; after a test-branch
deploy NixosTestDeploymentActive fires. The test fleet's thresholds are 20 s (cache.nix)."""
import pytest

from scenario_fleet import NIXOS_FLEET, TARGETS
from scenario_prometheus import PORT, Prometheus

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_prometheus_scrapes_the_targets_and_alerts_on_their_generations(homelab):
    base = homelab.baseline("target")
    homelab.cache.wait_for_open_port(PORT, timeout=homelab.seconds(300))
    prometheus = Prometheus(homelab.cache, slow=homelab.slow)

    # Both targets, and nothing else, each scraped once and up.
    prometheus.wait_until(
        "the targets are not all up",
        lambda: True if prometheus.target_health() == {node: "up" for node in TARGETS} else prometheus.target_health(),
        timeout=120,
    )
    prometheus.wait_until(
        "nixos_current_generation does not match the probe",
        lambda: True if prometheus.samples("nixos_current_generation").get("target") == base.current_generation
        else prometheus.samples("nixos_current_generation"),
        timeout=120,
    )
    prometheus.wait_until(
        "a freshly deployed target still has alerts",
        lambda: True if prometheus.alerts("target") == {} else prometheus.alerts("target"),
        timeout=60,
    )

    # `deploy --boot` with a new initrd: the reboot is pending until the target reboots.
    homelab.deploy_ok("target-new-initrd", boot=True)
    assert homelab.state("target").reboot_pending
    prometheus.wait_for_alert("target", "NixosRebootPending")
    assert "NixosRebootPending" not in prometheus.alerts("target2"), "only the host that needs it"

    homelab["target"].reboot()
    homelab.ready()
    assert not homelab.state("target").reboot_pending
    # A fresh sample from the rebooted target first: while it was down its series were stale,
    # which also resolves the alert.
    prometheus.wait_until(
        "no fresh nixos_reboot_pending == 0 from the rebooted target",
        lambda: True if prometheus.samples("nixos_reboot_pending").get("target") == 0
        else prometheus.samples("nixos_reboot_pending"),
        timeout=120,
    )
    prometheus.wait_for_no_alert("target", "NixosRebootPending")

    # A test-branch deploy: running, not the boot default.
    homelab.deploy_ok("target-v2", test_branch=True)
    testing = homelab.state("target")
    assert testing.current_generation > testing.boot_default.number
    prometheus.wait_for_alert("target", "NixosTestDeploymentActive")
    assert "NixosRebootPending" not in prometheus.alerts("target")
