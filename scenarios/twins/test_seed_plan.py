"""The seed's verification plan (issue 22, item 3) on NixOS twins, Development the guinea pig.
Each check reads the twins' own state (harness/nixos.py's probe, the files a system installs,
the exporter's textfile), never deploy-rs's words. Skipped, with the exact reason, wherever
twins cannot boot (scenarios/twins/conftest.py)."""
from __future__ import annotations

import pytest

from harness import cache
from twin_lab import GUINEA_PIG, variant_tree

pytestmark = pytest.mark.twins


def test_a_test_branch_deploy_is_active_now_and_the_boot_default_is_unchanged(twins):
    before = twins.state(GUINEA_PIG)
    twins.deploy_test(variant_tree(twins.scratch, "test-branch"))
    during = twins.state(GUINEA_PIG)
    assert twins.variant(GUINEA_PIG) == "test-branch", "the test-Development system is the running one"
    assert during.running_test_generation != -1, "it runs from the homelab-test profile"
    assert during.boot_default == before.boot_default, "the boot default is the last main deploy's"
    assert during.profile_generation == before.profile_generation, "the system profile is untouched"


def test_after_a_reboot_the_last_main_deploy_runs(twins):
    twins.deploy_main(variant_tree(twins.scratch, "main-1"))
    twins.deploy_test(variant_tree(twins.scratch, "test-after-main"))
    assert twins.variant(GUINEA_PIG) == "test-after-main"
    twins.reboot(GUINEA_PIG)
    after = twins.state(GUINEA_PIG)
    assert twins.variant(GUINEA_PIG) == "main-1", "the reboot returned to the last main deploy"
    assert after.booted_system == after.profile_system and after.running_test_generation == -1


def test_a_main_deploy_switches_every_deployable_twin(twins):
    before = {host: twins.state(host) for host in twins.deployable}
    twins.deploy_main(variant_tree(twins.scratch, "main-all"))
    for host in twins.deployable:
        now = twins.state(host)
        assert twins.variant(host) == "main-all", f"{host} runs the new system"
        assert now.profile_generation == before[host].profile_generation + 1, f"{host}: one new generation"
        assert now.current_system == now.profile_system, f"{host}: switched, not only installed"


def test_a_configuration_that_cuts_ssh_is_rolled_back(twins):
    before = twins.state(GUINEA_PIG)
    tree = variant_tree(twins.scratch, "no-ssh", "services.openssh.enable = lib.mkForce false;")
    twins.deploy_main(tree)
    after = twins.state(GUINEA_PIG)
    assert twins.variant(GUINEA_PIG) is None, "the no-ssh system is not the running one"
    assert after.current_system == before.current_system, "magic rollback put the previous system back"
    assert after.profile_system == before.profile_system, "and the system profile with it"
    assert twins.ssh_answers(GUINEA_PIG), "the deploy user logs in again"


def test_a_closure_pushed_to_the_cache_is_pulled_signed_by_another_twin(twins):
    server = cache_server(twins)
    puller = GUINEA_PIG if GUINEA_PIG != server else next(h for h in twins.hosts if h != server)
    system = twins.twin_system(variant_tree(twins.scratch, "cache-pull"), puller)
    twins.push_to_cache(server, [system])
    new_paths = sorted(twins.invalid_paths(puller, twins.closure_on_deployer(system)))
    assert new_paths, f"the cache-pull variant's closure must not be in {puller}'s store already"

    key = twins.cache_public_key(server)
    url = twins.facts[server].cache_url
    pulled = cache.realise_from_substituter(twins[puller], [system], url, [key])
    assert pulled.ok, (f"{puller} could not substitute from {url} (does {server} open Harmonia's port, "
                       f"homelab.services.harmonia.openFirewall?):\n{pulled.output}")
    unsigned = cache.unsigned_paths(cache.path_signatures(twins[puller], new_paths), key)
    assert not unsigned, f"not signed by {server}'s cache key: {unsigned}"


def cache_server(twins) -> str:
    """The booted twin that serves the cache, or a skip that says why this check cannot run."""
    servers = [host for host in twins.hosts if twins.facts[host].cache]
    if not servers:
        pytest.skip("no host of the fleet serves the binary cache (homelab.services.harmonia.enable): "
                    "there is no cache twin to push to")
    server, facts = servers[0], twins.facts[servers[0]]
    if not any(host != server for host in twins.hosts):
        pytest.skip(f"only the cache host's twin ({server}) is booted: name another host in $NDH_TWINS to pull")
    if str(facts.cache_url).startswith("https://"):
        pytest.skip(f"{server} serves the cache behind its nginx HTTPS front ({facts.cache_url}): "
                    "the twins hold no certificate for it yet (docs/twins.md, \"Not done yet\")")
    if facts.cache_public_key_file is None:
        pytest.skip(f"{server} does not generate its signing key (homelab.services.harmonia.generateKey = false): "
                    "its twin has no key to sign with")
    if facts.deploy_trust != "trusted-user":
        pytest.skip(f"{server}'s deploy user is not a trusted user (homelab.users.deploy.trust = "
                    f"{facts.deploy_trust}): the twins' deployer pushes unsigned paths, and the CI key "
                    "that signs the real pushes is not the harness's")
    return server


def test_the_generation_metrics_show_the_right_numbers(twins):
    twins.deploy_main(variant_tree(twins.scratch, "metrics"))
    state = twins.state(GUINEA_PIG)
    expected = state.metrics()
    assert expected, "the probe computes the generation metrics"
    exported = twins.exporter_metrics(GUINEA_PIG)
    assert exported, f"{GUINEA_PIG} exports no generation metrics (is monitoring on for it?)"
    for name, value in expected.items():
        assert exported.get(name) == value, f"{name}: exported {exported.get(name)}, state says {value}"
