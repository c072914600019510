"""Cache pull: CI pushes a closure to the fleet cache, the target substitutes it from there
(every new path carries the cache key's signature: nothing was copied directly), and a target
that does not trust the key refuses the same paths."""
import pytest

from harness import cache
from scenario_fleet import CACHE_URL, FLEET_DIR, NIXOS_FLEET, cache_signed, public_key

pytestmark = [pytest.mark.nixos, pytest.mark.fleet(NIXOS_FLEET)]


def test_the_target_substitutes_a_deploy_from_the_fleet_cache(homelab):
    homelab.baseline("target")
    profile = homelab.profile_path("target-cache-pull")
    closure = homelab.closure(profile)
    new_paths = sorted(set(closure) - homelab.valid_paths("target", closure))
    assert new_paths, "cache-pull's closure must not be preloaded on the target"

    homelab.push_to_cache([profile])
    homelab.deploy_ok("target-cache-pull")

    assert homelab.variant("target") == "cache-pull"
    signatures = cache.path_signatures(homelab["target"], new_paths)
    unsigned = sorted(set(new_paths) - set(cache_signed(signatures)))
    assert not unsigned, f"copied directly, not substituted from {CACHE_URL}: {unsigned}"


def test_a_key_the_target_does_not_trust_is_refused(homelab):
    homelab.ready()
    toplevel = homelab["deployer"].succeed(
        f"cd {FLEET_DIR} && nix eval --offline --raw "
        "'.#nixosConfigurations.target-cache-pull.config.system.build.toplevel'"
    ).strip()
    assert not homelab.valid_paths("target", [toplevel])
    homelab.push_to_cache([toplevel])

    refused = cache.realise_from_substituter(
        homelab["target"], [toplevel], CACHE_URL, [public_key("untrusted-key.pub")]
    )
    assert not refused.ok, refused.output
    assert not homelab.valid_paths("target", [toplevel])

    accepted = cache.realise_from_substituter(
        homelab["target"], [toplevel], CACHE_URL, [public_key("cache-signing-key.pub")]
    )
    assert accepted.ok, accepted.output
    assert toplevel in {copied.path for copied in accepted.copied}
