"""Auto rollback: the activation fails (a unit fails to start), deploy-rs exits non-zero, and
the target is back on the previous generation with the new one deleted."""
import pytest

from scenario_fleet import NIXOS_FLEET, tail

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_a_failing_activation_is_rolled_back(homelab):
    base = homelab.baseline("target")
    previous = base.current_generation
    result = homelab.deploy("target-failing-activation")

    assert not result.ok, f"deploy of a failing activation succeeded:\n{tail(result.log)}"
    after = homelab.wait_for_state(
        "target",
        lambda s: s.current_generation == previous and s.newest_generation == previous,
        timeout=240,
        what=f"did not return to generation {previous} with the new one deleted",
    )
    assert after.generation(previous + 1) is None
    assert after.boot_default.number == previous
    # The rollback re-ran the previous switch: the failed configuration left the ESP.
    assert after.boot_loader.default_system == base.current_system_of, after.boot_loader.describe()
    assert not after.boot_loader.entries_for(homelab.toplevel("target-failing-activation"))
    assert homelab.variant("target") == "v1"
    assert homelab.ssh_answers("target")
