"""The generation exporter (modules/services/monitoring/generation-exporter.sh) on this host:
what it reads and reports. Fake NixOS systems are real store paths (`nix-store --add`), the
system profile is a real Nix profile, and /run/current-system, /run/booted-system, the ESP's
loader.conf and entries and the EFI variables live under a temporary root
(generation_exporter_lib.py). The output is parsed with prometheus_client's text parser.
"""

from __future__ import annotations

import shutil

import pytest

from generation_exporter_lib import NOW, METRICS, store, host  # noqa: F401 (fixtures)


def test_fleet_exporter_plain_profile_after_a_switch(host, store):
    one, two = store.system("one", kernel="kernel-a"), store.system("two", kernel="kernel-b")
    host.deploy(one.toplevel, created=NOW - 7200)
    host.deploy(two.toplevel, created=NOW - 60)
    host.running(two.toplevel)
    host.loader_conf("timeout 5\ndefault nixos-generation-2.conf\nconsole-mode keep\n")
    host.entry("nixos-generation-1.conf", 1, one.toplevel)
    host.entry("nixos-generation-2.conf", 2, two.toplevel)
    assert host.metrics() == {
        "nixos_current_generation": 2,
        "nixos_booted_generation": 2,
        "nixos_boot_generation": 2,
        "nixos_profile_generation": 2,
        "nixos_reboot_pending": 0,
        "nixos_config_age_seconds": 60,
    }


def test_fleet_exporter_sees_through_deploy_rs_activatable_profiles(host, store):
    """deploy-rs sets the profile to its activatable buildEnv, /run/current-system is the toplevel."""
    one, two = store.system("one", kernel="kernel-a"), store.system("two", kernel="kernel-b")
    host.deploy(one.activatable)
    host.deploy(two.activatable, created=NOW - 5)
    host.running(two.toplevel, booted=one.toplevel)
    # deploy-rs's activate.nixos deletes loader.conf's `default` line on systemd-boot hosts;
    # newer nixpkgs names entries by content hash.
    host.loader_conf("timeout 5\nconsole-mode keep\n")
    host.entry("nixos-3f0c.conf", 1, one.toplevel)
    host.entry("nixos-9a1b.conf", 2, two.toplevel)
    metrics = host.metrics()
    assert metrics["nixos_current_generation"] == 2
    assert metrics["nixos_booted_generation"] == 1
    assert metrics["nixos_boot_generation"] == 2
    assert metrics["nixos_reboot_pending"] == 1, "booted kernel-a, boot default has kernel-b"
    assert metrics["nixos_config_age_seconds"] == 5


@pytest.mark.parametrize("loader_conf", ["default nixos-generation-1.conf\n", "timeout 3\n"], ids=["default-line", "default-deleted"])
def test_fleet_exporter_after_a_test_branch_deploy(host, store, loader_conf):
    """Profile N+1 from the test deploy, boot loader still at N: boot must report N."""
    one, two = store.system("one", kernel="kernel-a"), store.system("two", kernel="kernel-b")
    host.deploy(one.activatable)
    host.deploy(two.activatable)  # deploy-rs's nix-env --set for the test profile
    host.running(two.toplevel, booted=one.toplevel)  # switch-to-configuration test
    host.loader_conf(loader_conf)
    host.entry("nixos-generation-1.conf", 1, one.toplevel)  # test does not write boot entries
    metrics = host.metrics()
    assert metrics["nixos_profile_generation"] == 2
    assert metrics["nixos_current_generation"] == 2
    assert metrics["nixos_boot_generation"] == 1
    assert metrics["nixos_booted_generation"] == 1
    assert metrics["nixos_reboot_pending"] == 0


def test_fleet_exporter_loader_default_may_name_an_older_entry(host, store):
    """After a rollback with `switch-to-configuration boot`, the default is not the newest entry."""
    one, two = store.system("one", kernel="kernel-a"), store.system("two", kernel="kernel-b")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.running(two.toplevel)
    host.entry("nixos-generation-1.conf", 1, one.toplevel)
    host.entry("nixos-generation-2.conf", 2, two.toplevel)
    host.loader_conf("timeout 5\r\ndefault  nixos-generation-1.conf \r\neditor 0\r\n")
    metrics = host.metrics()
    assert metrics["nixos_boot_generation"] == 1
    assert metrics["nixos_reboot_pending"] == 1


def test_fleet_exporter_without_loader_conf_uses_the_profile_link(host, store):
    one, two = store.system("one"), store.system("two", kernel="kernel-b")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.running(one.toplevel)
    metrics = host.metrics()
    assert metrics["nixos_boot_generation"] == 2
    assert metrics["nixos_current_generation"] == 1
    assert metrics["nixos_reboot_pending"] == 1


def test_fleet_exporter_without_loader_conf_reads_the_profile_link_name(host, store):
    """Generations 1 and 3 hold the same system; the profile was switched back to 1."""
    one, two = store.system("one"), store.system("two")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.deploy(one.toplevel)
    (host.profiles / "system").unlink()
    (host.profiles / "system").symlink_to("system-1-link")
    host.running(one.toplevel)
    metrics = host.metrics()
    assert metrics["nixos_boot_generation"] == 1
    assert metrics["nixos_profile_generation"] == 1
    assert metrics["nixos_current_generation"] == 3, "several generations of one system: the highest"
    assert metrics["nixos_reboot_pending"] == 0


def test_fleet_exporter_several_generations_of_one_system_report_the_highest(host, store):
    one, two = store.system("one"), store.system("two")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.deploy(one.activatable)  # a rollback by redeploying: generation 3 is system "one" again
    host.running(one.toplevel, booted=two.toplevel)
    metrics = host.metrics()
    assert metrics["nixos_current_generation"] == 3
    assert metrics["nixos_booted_generation"] == 2


def test_fleet_exporter_efi_variables_come_before_loader_conf(host, store):
    one, two, three = (store.system(n, kernel=f"kernel-{n}") for n in ["one", "two", "three"])
    for system in (one, two, three):
        host.deploy(system.toplevel)
    host.running(three.toplevel)
    host.loader_conf("default nixos-generation-3.conf\n")
    for number, system in enumerate((one, two, three), start=1):
        host.entry(f"nixos-generation-{number}.conf", number, system.toplevel)
    assert host.metrics()["nixos_boot_generation"] == 3
    host.efi_variable("LoaderEntryDefault", "nixos-generation-2.conf")
    assert host.metrics()["nixos_boot_generation"] == 2
    host.efi_variable("LoaderEntryOneShot", "nixos-generation-1.conf")
    metrics = host.metrics()
    assert metrics["nixos_boot_generation"] == 1
    assert metrics["nixos_reboot_pending"] == 1


def test_fleet_exporter_saved_default_preferred_and_boot_counters(host, store):
    one, two = store.system("one"), store.system("two", kernel="kernel-b")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.running(two.toplevel)
    host.entry("nixos-generation-1+3.conf", 1, one.toplevel)
    host.entry("nixos-generation-2+2-1.conf", 2, two.toplevel)
    host.loader_conf("default @saved\n")
    host.efi_variable("LoaderEntryLastBooted", "nixos-generation-1.conf")
    assert host.metrics()["nixos_boot_generation"] == 1
    # nixpkgs with boot counting: `preferred <id>` plus `default nixos-*`.
    host.loader_conf("preferred nixos-generation-2\ndefault nixos-*\n")
    assert host.metrics()["nixos_boot_generation"] == 2


def test_fleet_exporter_specialisation_and_profile_entries(host, store):
    one, two = store.system("one"), store.system("two")
    special = store.system("two-special", kernel="kernel-rt")
    host.deploy(one.toplevel)
    host.deploy(two.toplevel)
    host.running(two.toplevel)
    host.entry("nixos-generation-2.conf", 2, two.toplevel)
    host.entry("nixos-generation-2-specialisation-rt.conf", 2, special.toplevel, title="NixOS (rt)")
    host.entry("nixos-work-generation-7.conf", 7, one.toplevel, title="NixOS [work]")
    host.loader_conf("default nixos-generation-2-specialisation-rt.conf\n")
    metrics = host.metrics()
    assert metrics["nixos_boot_generation"] == 2, "a specialisation boots its generation"
    assert metrics["nixos_reboot_pending"] == 1, "the specialisation has another kernel"
    # No default: the newest entry of the system profile, not another profile's generation 7.
    host.loader_conf("timeout 1\n")
    assert host.metrics()["nixos_boot_generation"] == 2


def test_fleet_exporter_missing_and_dangling_links_report_minus_one(host, store):
    host.link("booted-system", "/nix/store/00000000000000000000000000000000-gone")
    host.loader_conf("default nixos-generation-4.conf\n")
    metrics = host.metrics()
    assert metrics == {name: -1 for name in METRICS}


def test_fleet_exporter_profile_link_to_a_deleted_generation(host, store):
    (host.profiles / "system").symlink_to("system-9-link")
    assert host.metrics() == {name: -1 for name in METRICS}


def test_fleet_exporter_empty_root_reports_minus_one(host):
    shutil.rmtree(host.profiles)
    assert host.metrics() == {name: -1 for name in METRICS}


def test_fleet_exporter_current_system_outside_the_profile(host, store):
    one, stray = store.system("one"), store.system("stray")
    host.deploy(one.toplevel)
    host.running(stray.toplevel, booted=one.toplevel)  # e.g. `nixos-rebuild test` of an unprofiled build
    metrics = host.metrics()
    assert metrics["nixos_current_generation"] == -1
    assert metrics["nixos_config_age_seconds"] == -1
    assert metrics["nixos_booted_generation"] == 1


def test_fleet_exporter_escapes_the_host_label(host, store):
    label = 'we"ird\\host'
    metrics = host.metrics(NIXOS_GEN_HOST=label)
    assert metrics["nixos_profile_generation"] == -1
