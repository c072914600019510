"""Magic rollback: the new configuration cuts SSH, deploy-rs cannot confirm, and the target
rolls itself back: previous generation running, the new one deleted, sshd answering again."""
import pytest

from scenario_fleet import NIXOS_FLEET, tail

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_a_config_that_cuts_ssh_is_rolled_back_by_the_target(homelab):
    base = homelab.baseline("target")
    previous = base.current_generation
    result = homelab.deploy("target-cut-ssh")

    assert not result.ok, f"deploy of an SSH-cutting config succeeded:\n{tail(result.log)}"
    # The target rolls back on its own clock (confirmTimeout), maybe after deploy returned.
    after = homelab.wait_for_state(
        "target",
        lambda s: s.current_generation == previous and s.newest_generation == previous,
        timeout=240,
        what=f"did not return to generation {previous} with the new one deleted",
    )
    assert after.generation(previous + 1) is None, "the failed generation must be deleted"
    assert after.profile_generation == previous
    assert after.boot_loader.default_system == base.current_system_of, after.boot_loader.describe()
    assert not after.boot_loader.entries_for(homelab.toplevel("target-cut-ssh"))
    assert homelab.variant("target") == "v1"
    assert homelab.ssh_answers("target"), "sshd must answer again after the rollback"
