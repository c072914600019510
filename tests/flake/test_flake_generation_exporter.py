"""The generation exporter (modules/services/monitoring/generation-exporter.sh) on this host.

Fake NixOS systems are real store paths (`nix-store --add`), the system profile is a real Nix
profile (`nix-env -p <root>/profiles/system --set`), and /run/current-system, /run/booted-system,
the ESP's loader.conf and entries and the EFI variables live under a temporary root. The output
is parsed with prometheus_client's text parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / "modules" / "services" / "monitoring" / "generation-exporter.sh"
OUTPUT_NAME = "nixos_generation.prom"
SYSTEMD_BOOT_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
NOW = 2_000_000_000
METRICS = [
    "nixos_current_generation",
    "nixos_booted_generation",
    "nixos_boot_generation",
    "nixos_profile_generation",
    "nixos_reboot_pending",
    "nixos_config_age_seconds",
]


def _require_tools():
    for tool in ["nix-store", "nix-env", "bash"]:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found on PATH: the exporter tests build real Nix profiles (install Debian's nix-bin)")


def _add_to_store(path: Path) -> str:
    result = subprocess.run(["nix-store", "--add", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"nix-store --add {path} failed:\n{result.stderr}"
    return result.stdout.strip()


@dataclass(frozen=True)
class System:
    toplevel: str  # a NixOS toplevel: nixos-version, kernel and initrd links
    activatable: str  # deploy-rs's buildEnv around it (what deploy-rs puts into the profile)


class Store:
    """Fake NixOS systems in the real store, built once per test session."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._files: dict[str, str] = {}
        self._systems: dict[str, System] = {}

    def file(self, name: str) -> str:
        if name not in self._files:
            source = self.workdir / "files" / name
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(f"{name}\n")
            self._files[name] = _add_to_store(source)
        return self._files[name]

    def system(self, name: str, kernel: str = "kernel-a", initrd: str = "initrd-a") -> System:
        key = f"{name}:{kernel}:{initrd}"
        if key not in self._systems:
            top = self.workdir / "systems" / key.replace(":", "_") / f"nixos-system-{name}"
            top.mkdir(parents=True)
            (top / "nixos-version").write_text(f"26.05.{name}")
            (top / "kernel").symlink_to(self.file(kernel))
            (top / "initrd").symlink_to(self.file(initrd))
            toplevel = _add_to_store(top)
            # Shaped like deploy-rs's lib.activate.custom: a buildEnv of the toplevel plus scripts.
            env = self.workdir / "systems" / key.replace(":", "_") / f"activatable-nixos-system-{name}"
            env.mkdir()
            for entry in ["nixos-version", "kernel", "initrd"]:
                (env / entry).symlink_to(f"{toplevel}/{entry}")
            (env / "deploy-rs-activate").write_text("#!/bin/sh\n")
            self._systems[key] = System(toplevel, _add_to_store(env))
        return self._systems[key]


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    _require_tools()
    return Store(tmp_path_factory.mktemp("store-sources"))


class Host:
    """A fake host root: profiles, /run links, ESP, EFI variables, textfile directory."""

    def __init__(self, root: Path):
        self.root = root
        self.profiles = root / "nix/var/nix/profiles"
        self.run = root / "run"
        self.esp = root / "boot"
        self.efivars = root / "efivars"
        self.output = root / "textfile"
        for directory in [self.profiles, self.run, self.esp, self.efivars, self.output]:
            directory.mkdir(parents=True)

    def deploy(self, store_path: str, created: int | None = None) -> int:
        """`nix-env --set` on the system profile; returns the new generation number."""
        result = subprocess.run(
            ["nix-env", "-p", str(self.profiles / "system"), "--set", store_path],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, f"nix-env --set failed:\n{result.stderr}"
        number = int(os.readlink(self.profiles / "system").split("-")[1])
        if created is not None:
            os.utime(self.profiles / f"system-{number}-link", (created, created), follow_symlinks=False)
        return number

    def link(self, name: str, target: str):
        (self.run / name).symlink_to(target)

    def running(self, current: str, booted: str | None = None):
        """/run/current-system -> current, /run/booted-system -> booted (default: the same)."""
        self.link("current-system", current)
        self.link("booted-system", booted or current)

    def loader_conf(self, text: str):
        (self.esp / "loader").mkdir(exist_ok=True)
        (self.esp / "loader" / "loader.conf").write_text(text)

    def entry(self, filename: str, generation: int, toplevel: str | None, title: str = "NixOS"):
        entries = self.esp / "loader" / "entries"
        entries.mkdir(parents=True, exist_ok=True)
        lines = [f"title {title}", f"version Generation {generation} 26.05 (Linux 6.12), built on 2026-11-25"]
        lines += ["linux /EFI/nixos/kernel.efi", "initrd /EFI/nixos/initrd.efi"]
        if toplevel is not None:
            lines.append(f"options init={toplevel}/init root=fstab loglevel=4")
        lines.append("sort-key nixos")
        (entries / filename).write_text("\n".join(lines) + "\n")

    def efi_variable(self, name: str, value: str):
        (self.efivars / f"{name}-{SYSTEMD_BOOT_GUID}").write_bytes(
            b"\x07\x00\x00\x00" + (value + "\0").encode("utf-16-le")
        )

    def environment(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIXOS_GEN_")}
        env.update(
            NIXOS_GEN_OUTPUT_DIR=str(self.output),
            NIXOS_GEN_HOST="testhost",
            NIXOS_GEN_PROFILES_DIR=str(self.profiles),
            NIXOS_GEN_CURRENT_SYSTEM=str(self.run / "current-system"),
            NIXOS_GEN_BOOTED_SYSTEM=str(self.run / "booted-system"),
            NIXOS_GEN_ESP=str(self.esp),
            NIXOS_GEN_EFIVARS=str(self.efivars),
            NIXOS_GEN_NOW=str(NOW),
        )
        env.update(overrides)
        return env

    def export(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(EXPORTER)], capture_output=True, text=True, timeout=60,
            env=self.environment(**overrides),
        )

    def metrics(self, **overrides: str) -> dict[str, float]:
        result = self.export(**overrides)
        assert result.returncode == 0, f"exporter failed:\n{result.stderr}"
        assert result.stderr == "", f"exporter complained:\n{result.stderr}"
        return parse(self.output / OUTPUT_NAME, host=overrides.get("NIXOS_GEN_HOST", "testhost"))


def parse(path: Path, host: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            assert sample.labels == {"host": host}, sample
            values[sample.name] = sample.value
    assert sorted(values) == sorted(METRICS)
    return values


@pytest.fixture
def host(tmp_path, store) -> Host:
    pytest.importorskip("prometheus_client", reason="prometheus_client is missing from this Python: pip install -e . into .venv (ci/bootstrap does)")
    return Host(tmp_path / "root")


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


def test_fleet_exporter_replaces_the_file_atomically(host, store):
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    target = host.output / OUTPUT_NAME
    host.metrics()
    first_inode = target.stat().st_ino
    host.metrics()
    assert target.stat().st_ino != first_inode, "the file must be renamed into place, not rewritten"
    assert target.stat().st_mode & 0o777 == 0o644, "node exporter reads it as another user"
    assert sorted(p.name for p in host.output.iterdir()) == [OUTPUT_NAME], "no temporary files left"


def test_fleet_exporter_readers_never_see_a_partial_file(host, store):
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    target = host.output / OUTPUT_NAME
    host.metrics()
    stop = threading.Event()
    bad: list[str] = []

    def read_continuously():
        while not stop.is_set():
            content = target.read_text()
            if content.count("\n") != 3 * len(METRICS) or not content.endswith("\n"):
                bad.append(content)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(15):
            assert host.export().returncode == 0
    finally:
        stop.set()
        reader.join()
    assert not bad, f"a reader saw an incomplete file: {bad[0]!r}"


def test_fleet_exporter_failure_leaves_the_previous_file(host, store):
    target = host.output / OUTPUT_NAME
    target.write_text("previous\n")
    result = host.export(NIXOS_GEN_NOW="not-a-number")
    assert result.returncode != 0
    assert "NIXOS_GEN_NOW" in result.stderr
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in host.output.iterdir()) == [OUTPUT_NAME]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NIXOS_GEN_OUTPUT_DIR": ""}, "NIXOS_GEN_OUTPUT_DIR is not set"),
        ({"NIXOS_GEN_OUTPUT_DIR": "/nonexistent/textfile"}, "'/nonexistent/textfile' does not exist"),
    ],
)
def test_fleet_exporter_explains_a_missing_output_directory(host, overrides, message):
    result = host.export(**overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_fleet_exporter_uses_only_bash_and_coreutils(tmp_path, host, store):
    """Run with a PATH holding nothing but bash and coreutils programs, as on NixOS."""
    coreutils = [
        "readlink", "dirname", "tail", "tr", "mktemp", "chmod", "mv", "rm", "stat", "date", "uname",
    ]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ["bash", *coreutils]:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    one = store.system("one")
    host.deploy(one.toplevel)
    host.running(one.toplevel)
    host.loader_conf("default nixos-generation-1.conf\n")
    host.entry("nixos-generation-1.conf", 1, one.toplevel)
    host.efi_variable("LoaderEntryDefault", "nixos-generation-1.conf")
    env = host.environment(PATH=str(bin_dir))
    env.pop("NIXOS_GEN_NOW")
    env.pop("NIXOS_GEN_HOST")
    result = subprocess.run([str(bin_dir / "bash"), str(EXPORTER)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((host.output / OUTPUT_NAME).read_text())}
    assert families["nixos_boot_generation"].samples[0].value == 1
    assert families["nixos_config_age_seconds"].samples[0].value >= 0


def test_fleet_exporter_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not found on PATH (writeShellApplication runs it when Nix builds the exporter)")
    result = subprocess.run(["shellcheck", "-s", "bash", str(EXPORTER)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
