"""harness.nixos's probes and the fleet's generation exporter decide the same facts the same
way: both run here against the same fake machines (real store paths, real Nix profiles), in the
shapes deploy-rs really leaves behind (activatable buildEnvs in the profile, loader.conf without
a `default` line, hash-named and boot-counted entries, EFI variables)."""
from __future__ import annotations

from typing import Iterator

import pytest
from support import HostShell
from support import require

from harness import nixos


@pytest.fixture
def shell() -> Iterator[HostShell]:
    require("bash", "readlink")
    with HostShell("parity") as shell:
        yield shell


def probe_and_exporter_agree(root, shell) -> nixos.SystemState:
    state = nixos.probe_system(shell, root.paths)
    assert state.metrics() == root.exporter_metrics()
    return state


def test_deploy_rs_profiles_resolve_through_their_activatable(root, store, shell):
    """Must-fix 1: profile links hold deploy-rs's buildEnv; /run/current-system the toplevel."""
    one_top, one = store.system("one", kernel="kernel-a")
    two_top, two = store.system("two", kernel="kernel-b")
    assert root.deploy(one) == 1 and root.deploy(two) == 2
    root.link("current", two_top)
    root.link("booted", one_top)
    state = probe_and_exporter_agree(root, shell)
    assert state.generation(2).store_path == two and state.generation(2).system == two_top
    assert (state.current_generation, state.booted_generation) == (2, 1)
    assert state.profile_generation == 2


def test_loader_conf_without_default_and_hash_named_entries(root, store, shell):
    """Must-fix 2: deploy-rs deletes `default`; newer nixpkgs names entries by hash."""
    one_top, one = store.system("one", kernel="kernel-a")
    two_top, two = store.system("two", kernel="kernel-b")
    root.deploy(one), root.deploy(two)
    root.link("current", two_top)
    root.link("booted", one_top)
    root.loader_conf("timeout 5\nconsole-mode keep\n")
    root.entry("nixos-3f0c.conf", 1, one_top)
    root.entry("nixos-9a1b+3.conf", 2, two_top)
    state = probe_and_exporter_agree(root, shell)
    default = state.boot_default
    assert (default.number, default.source, default.entry) == (2, "newest-entry", "nixos-9a1b+3.conf")
    assert state.reboot_pending_metric == 1 and state.reboot_pending


def test_test_branch_keeps_the_boot_default(root, store, shell):
    one_top, one = store.system("one")
    two_top, two = store.system("two", kernel="kernel-b")
    root.deploy(one), root.deploy(two)  # the test profile's nix-env --set
    root.link("current", two_top)  # switch-to-configuration test
    root.link("booted", one_top)
    root.loader_conf("timeout 3\n")
    root.entry("nixos-generation-1.conf", 1, one_top)  # `test` writes no entry
    state = probe_and_exporter_agree(root, shell)
    assert (state.profile_generation, state.current_generation, state.boot_default.number) == (2, 2, 1)
    assert state.reboot_pending_metric == 0


def test_efi_variables_and_saved_default_come_first(root, store, shell):
    tops = [store.system(name, kernel=f"kernel-{name}")[0] for name in ("one", "two", "three")]
    for top in tops:
        root.deploy(top)
    root.link("current", tops[2])
    root.link("booted", tops[2])
    for number, top in enumerate(tops, start=1):
        root.entry(f"nixos-generation-{number}.conf", number, top)
    root.loader_conf("default nixos-generation-3.conf\n")
    assert probe_and_exporter_agree(root, shell).boot_default.number == 3
    root.efi_variable("LoaderEntryDefault", "nixos-generation-2.conf")
    assert probe_and_exporter_agree(root, shell).boot_default.source == "efi-variable"
    root.efi_variable("LoaderEntryOneShot", "nixos-generation-1.conf")
    assert probe_and_exporter_agree(root, shell).boot_default.number == 1


def test_saved_and_preferred_defaults(root, store, shell):
    one_top, _ = store.system("one")
    two_top, _ = store.system("two", kernel="kernel-b")
    root.deploy(one_top), root.deploy(two_top)
    root.link("current", two_top)
    root.link("booted", two_top)
    root.entry("nixos-generation-1+3.conf", 1, one_top)
    root.entry("nixos-generation-2+2-1.conf", 2, two_top)
    root.loader_conf("default @saved\n")
    root.efi_variable("LoaderEntryLastBooted", "nixos-generation-1.conf")
    assert probe_and_exporter_agree(root, shell).boot_default.number == 1
    root.loader_conf("preferred nixos-generation-2\ndefault nixos-*\n")
    assert probe_and_exporter_agree(root, shell).boot_default.number == 2


def test_specialisation_and_other_profile_entries(root, store, shell):
    one_top, _ = store.system("one")
    two_top, _ = store.system("two")
    special, _ = store.system("two-special", kernel="kernel-rt")
    root.deploy(one_top), root.deploy(two_top)
    root.link("current", two_top)
    root.link("booted", two_top)
    root.entry("nixos-generation-2.conf", 2, two_top)
    root.entry("nixos-generation-2-specialisation-rt.conf", 2, special, title="NixOS (rt)")
    root.entry("nixos-work-generation-7.conf", 7, one_top, title="NixOS [work]")
    root.loader_conf("default nixos-generation-2-specialisation-rt.conf\n")
    state = probe_and_exporter_agree(root, shell)
    assert state.boot_default.number == 2 and state.reboot_pending_metric == 1
    root.loader_conf("timeout 1\n")
    assert probe_and_exporter_agree(root, shell).boot_default.number == 2


def test_no_loader_conf_reads_the_profile_link(root, store, shell):
    one_top, _ = store.system("one")
    two_top, _ = store.system("two")
    root.deploy(one_top), root.deploy(two_top), root.deploy(one_top)
    link = root.root / "nix/var/nix/profiles/system"
    link.unlink()
    link.symlink_to("system-1-link")
    root.link("current", one_top)
    root.link("booted", one_top)
    state = probe_and_exporter_agree(root, shell)
    assert (state.boot_default.number, state.boot_default.source) == (1, "profile-link")
    assert state.current_generation == 3, "several generations of one system: the highest"


@pytest.mark.parametrize("loader", [None, "default nixos-generation-4.conf\n"])
def test_missing_and_dangling_links(root, store, shell, loader):
    root.link("booted", "/nix/store/00000000000000000000000000000000-gone")
    if loader:
        root.loader_conf(loader)
    state = probe_and_exporter_agree(root, shell)
    assert set(state.metrics().values()) == {-1}
    with pytest.raises(nixos.NixosProbeError, match="boot default is unknown"):
        _ = state.reboot_pending


def test_profile_link_to_a_deleted_generation(root, store, shell):
    (root.root / "nix/var/nix/profiles/system").symlink_to("system-9-link")
    state = probe_and_exporter_agree(root, shell)
    assert state.profile_generation == -1
