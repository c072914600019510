"""trust = "signed-closures": the deploy user is no trusted Nix user, so the target's daemon
accepts only paths signed by a key it trusts. deploy-rs copies paths of its own that no cache
ever signed (activatable-*, and *-activate-path, *-activate-rs when new; the toplevel itself is
preloaded here), so the deploy works only after CI signed the profile's whole closure with
`ci/deploy-plan --exec sign` (the deploy job's signing step). Unsigned, the same deploy is
refused.

Runs only on a NixOS test fleet (nixpkgs builds the nodes, KVM or --vm-accel=tcg). Checked here
without VMs: the sign command (tests/ci/test_ci_deploy_plan.py, real `nix store sign`) and the
module's nix settings (tests/flake/test_flake_modules.py).
"""
import pytest

from harness import cache
from scenario_fleet import NIXOS_FLEET, public_key, tail

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_a_signed_closures_target_takes_a_deploy_only_once_ci_signed_it(homelab):
    homelab.baseline("target")
    homelab.deploy_ok("target-signed-closures")  # from now on `deploy` is an untrusted client
    assert homelab.variant("target") == "signed-closures"
    trusted = homelab["target"].succeed("grep -h '^trusted-users' /etc/nix/nix.conf || true")
    assert "deploy" not in trusted.split(), trusted

    profile = homelab.profile_path("target-signed-v2")
    closure = homelab.closure(profile)
    new_paths = sorted(set(closure) - homelab.valid_paths("target", closure))
    # At least deploy-rs's activatable buildEnv (its -activate-path and -activate-rs scripts do
    # not name the toplevel, so an earlier deploy may have brought identical ones already).
    assert profile in new_paths, new_paths

    refused = homelab.deploy("target-signed-v2")
    assert not refused.ok, f"an unsigned closure was accepted:\n{tail(refused.log)}"
    assert homelab.variant("target") == "signed-closures"
    assert not homelab.valid_paths("target", [profile]), "the unsigned profile must not get in"

    homelab.sign_for_deploy("target-signed-v2")
    homelab.deploy_ok("target-signed-v2")
    assert homelab.variant("target") == "signed-v2"
    signatures = cache.path_signatures(homelab["target"], new_paths)
    unsigned = cache.unsigned_paths(signatures, public_key("ci-signing-key.pub"))
    assert not unsigned, f"paths in the target's store without the CI signature: {unsigned}"
