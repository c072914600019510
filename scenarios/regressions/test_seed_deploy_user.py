"""Regression scenarios for the two design bugs of the seed's deploy user (issue 6;
docs/deploy-rs-facts.md). Each deploys a deploy-user variant first, then a normal deploy must
still work:

  seed-sudo    sudo only for `nix-env --set` and `switch-to-configuration`: deploy-rs runs
               `<closure>/activate-rs` and `rm <canary>` through sudo, so activation is refused;
  seed-shell   no login shell: ssh runs every command through it, so `nix copy` already fails;
  fixed-module the deploy user as users/deploy/default.nix makes it: passes.

The seed variants are expected to fail (strict: if one starts passing, the variant no longer
reproduces its bug and the test fails). Only a failure of the deploy under test counts as the
expected one (`BugReproduced`): the fleet not booting, the baseline deploy or installing the
variant failing is an ordinary failure.
"""
import pytest

from scenario_fleet import NIXOS_FLEET, DeployFailed

pytestmark = [pytest.mark.nixos, pytest.mark.regression, pytest.mark.fleet(NIXOS_FLEET)]


class BugReproduced(AssertionError):
    """The deploy under test failed: what each seed variant is expected to show."""


@pytest.mark.parametrize(
    "user_variant",
    [
        pytest.param(
            "seed-sudo",
            marks=pytest.mark.xfail(
                strict=True, raises=BugReproduced,
                reason="seed's sudo rules do not allow activate-rs (deploy-rs's activation)",
            ),
        ),
        pytest.param(
            "seed-shell",
            marks=pytest.mark.xfail(
                strict=True, raises=BugReproduced,
                reason="seed's deploy user has no login shell; ssh needs one for every command",
            ),
        ),
        pytest.param("v1", id="fixed-module"),
    ],
)
def test_deploys_keep_working_after_the_deploy_user_changes(homelab, user_variant):
    homelab.baseline("target")
    # Install the user variant. Magic rollback off: confirming needs the new user to work,
    # which is what the next step tests.
    homelab.deploy_ok(f"target-{user_variant}", magic_rollback=False)
    before = homelab.state("target")

    try:
        homelab.deploy_ok("target-v2")
    except DeployFailed as failure:
        raise BugReproduced(str(failure)) from failure

    after = homelab.state("target")
    assert after.current_generation == before.newest_generation + 1
    assert homelab.variant("target") == "v2"
