"""harness.nixos probes against real Nix profiles on the host.

Toplevel-like store paths (a directory with kernel and initrd symlinks, like a NixOS system)
are added with `nix-store --add`, generations are made with `nix-env -p <root>/.../system
--set`, and /run/current-system, /run/booted-system and loader.conf are faked under a temp root.
The probes run through HostShell: real bash, real readlink, real profile links.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import HostShell
from deploy_testlib import StorePaths, require_nix

from harness import nixos
from harness.nixos import NixosPaths, NixosProbeError


@pytest.fixture(autouse=True)
def _nix_present() -> None:
    require_nix()


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class FakeSystems:
    """Store paths shaped like NixOS toplevels, and a machine root to install them in."""

    root: Path
    paths: NixosPaths
    store: StorePaths
    workdir: Path

    def add(self, sources: list[Path]) -> list[str]:
        """`nix-store --add` several files or directories in one call."""
        paths = _run("nix-store", "--add", *map(str, sources)).splitlines()
        self.store.add(*paths)
        return paths

    def store_files(self, contents: dict[str, str]) -> list[str]:
        for name, content in contents.items():
            (self.workdir / name).write_text(content)
        return self.add([self.workdir / name for name in contents])

    def toplevels(self, specs: dict[str, tuple[str, str]]) -> list[str]:
        """Directories shaped like a NixOS toplevel: kernel and initrd symlinks, a version."""
        for name, (kernel, initrd) in specs.items():
            top = self.workdir / name
            top.mkdir()
            (top / "kernel").symlink_to(kernel)
            (top / "initrd").symlink_to(initrd)
            (top / "nixos-version").write_text(f"{name} {uuid.uuid4().hex}\n")  # unique per run
        return self.add([self.workdir / name for name in specs])

    def set_generation(self, toplevel: str) -> None:
        _run("nix-env", "-p", f"{self.paths.profiles_dir}/system", "--set", toplevel)

    def rollback(self) -> None:
        _run("nix-env", "-p", f"{self.paths.profiles_dir}/system", "--rollback")

    def link(self, link: str, target: str) -> None:
        path = Path(link)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.symlink_to(target)

    def loader_conf(self, text: str) -> None:
        path = Path(self.paths.loader_conf)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def entry(self, file_name: str, generation: int, toplevel: str, title: str = "NixOS") -> None:
        """A systemd-boot entry as systemd-boot-builder.py writes it (init= names the toplevel)."""
        path = Path(self.paths.boot_entries) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"title {title}\nversion Generation {generation} 26.05 (Linux 6.12)\n"
            "linux /EFI/nixos/kernel.efi\ninitrd /EFI/nixos/initrd.efi\n"
            f"options init={toplevel}/init root=fstab loglevel=4\nsort-key nixos\n"
        )

    def entries_for(self, tops: dict[str, str]) -> None:
        """One legacy-named entry per generation topN."""
        for number in (1, 2, 3):
            self.entry(f"nixos-generation-{number}.conf", number, tops[f"top{number}"])


@pytest.fixture
def systems(scratch: Path, store_paths: StorePaths) -> FakeSystems:
    root = scratch / "machine"
    paths = NixosPaths.under(str(root))
    Path(paths.profiles_dir).mkdir(parents=True)
    workdir = scratch / "src"
    workdir.mkdir()
    return FakeSystems(root, paths, store_paths, workdir)


@pytest.fixture
def three_generations(systems: FakeSystems) -> dict[str, str]:
    """Generations 1 and 2 share kernel k1/initrd i1; generation 3 has a new kernel k2."""
    tag = uuid.uuid4().hex
    k1, k2, i1 = systems.store_files(
        {"kernel-1": f"k1 {tag}", "kernel-2": f"k2 {tag}", "initrd-1": f"i1 {tag}"}
    )
    top1, top2, top3 = systems.toplevels({"top1": (k1, i1), "top2": (k1, i1), "top3": (k2, i1)})
    tops = {"top1": top1, "top2": top2, "top3": top3}
    for name in ("top1", "top2", "top3"):
        systems.set_generation(tops[name])
    return {**tops, "k1": k1, "k2": k2, "i1": i1}


# systemd-boot-builder.py writes "timeout ...", "default <entry>", "editor 0", "console-mode ..."
def _loader(entry: str) -> str:
    return f"timeout 5\ndefault {entry}\neditor 0\nconsole-mode keep\n"


def test_generations_are_listed_with_their_store_paths(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    state = nixos.probe_system(host_shell, systems.paths)
    assert [g.number for g in state.generations] == [1, 2, 3]
    assert [g.store_path for g in state.generations] == [
        three_generations["top1"],
        three_generations["top2"],
        three_generations["top3"],
    ]
    assert state.generation(3).kernel == three_generations["k2"]
    assert state.generation(3).initrd == three_generations["i1"]
    assert state.newest_generation == 3
    assert len(host_shell.commands) == 1  # everything in one round trip


def test_current_and_booted_generations(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.link(systems.paths.current_system, three_generations["top2"])
    systems.link(systems.paths.booted_system, three_generations["top1"])
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.current_generation == 2
    assert state.booted_generation == 1
    assert nixos.current_generation(host_shell, systems.paths) == 2
    assert nixos.booted_generation(host_shell, systems.paths) == 1


def test_generation_sharing_a_store_path_resolves_to_the_highest(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.set_generation(three_generations["top2"])  # generation 4 = same path as 2
    systems.link(systems.paths.current_system, three_generations["top2"])
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.newest_generation == 4
    assert state.current_generation == 4


def test_system_not_in_any_generation_is_minus_one(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    [stray] = systems.toplevels({"stray": (three_generations["k1"], three_generations["i1"])})
    systems.link(systems.paths.current_system, stray)
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.current_system == stray
    assert state.current_generation == nixos.NO_GENERATION == -1
    assert state.booted_generation == -1  # no /run/booted-system at all
    assert state.booted_system is None


def test_fresh_machine_without_a_system_profile(
    systems: FakeSystems, host_shell: HostShell
) -> None:
    # docs/nixos-facts.md: a test VM may have no system profile before the first `nix-env --set`.
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.generations == ()
    assert state.newest_generation == -1
    assert state.profile_link is None
    assert state.boot_default == nixos.BootDefault(number=-1, source="none")


def test_boot_default_falls_back_to_the_profile_link(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    default = nixos.boot_default_generation(host_shell, systems.paths)
    assert (default.number, default.source) == (3, "profile-link")
    systems.rollback()  # system -> system-2-link, generation 3 still exists
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.profile_link == "system-2-link"
    assert (state.boot_default.number, state.boot_default.source) == (2, "profile-link")
    assert state.newest_generation == 3


def test_boot_default_comes_from_loader_conf_when_present(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    # A `--boot`-style state: the profile says 3, systemd-boot's default says 2.
    systems.entries_for(three_generations)
    systems.loader_conf(_loader("nixos-generation-2.conf"))
    default = nixos.boot_default_generation(host_shell, systems.paths)
    assert default.number == 2
    assert default.source == "loader.conf"
    assert default.entry == "nixos-generation-2.conf"
    assert default.system == three_generations["top2"]


def test_loader_conf_without_final_newline_is_read(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.entries_for(three_generations)
    systems.loader_conf("timeout 5\ndefault nixos-generation-1.conf")
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.boot_default.number == 1
    assert state.loader_conf is not None and "default nixos-generation-1.conf" in state.loader_conf


def test_loader_conf_naming_no_entry_gives_an_unknown_boot_default(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    # The exporter's rule: the answer comes from the entry file, never from the name alone.
    systems.loader_conf(_loader("nixos-generation-2.conf"))
    default = nixos.boot_default_generation(host_shell, systems.paths)
    assert (default.number, default.entry, default.choice) == (-1, None, "nixos-generation-2.conf")


@pytest.mark.parametrize(
    ("file_name", "expected_id"),
    [
        # Names as systemd-boot-builder.py writes them, with and without boot counting.
        ("nixos-generation-12.conf", "nixos-generation-12.conf"),
        ("nixos-generation-3-specialisation-debug.conf", "nixos-generation-3-specialisation-debug.conf"),
        ("nixos-1f3c9a.conf", "nixos-1f3c9a.conf"),
        ("nixos-1f3c9a+3.conf", "nixos-1f3c9a.conf"),
        ("nixos-1f3c9a+2-1.conf", "nixos-1f3c9a.conf"),
        ("nixos-generation-5", "nixos-generation-5.conf"),
    ],
)
def test_boot_entry_ids_drop_boot_counters(file_name: str, expected_id: str) -> None:
    assert nixos.entry_id(file_name) == expected_id


def test_loader_conf_values_last_occurrence_wins() -> None:
    text = "timeout 3\r\ndefault  nixos-a.conf \r\npreferred x\ndefault nixos-b.conf\n"
    assert nixos.loader_conf_value(text, "default") == "nixos-b.conf"
    assert nixos.loader_conf_value(text, "preferred") == "x"
    assert nixos.loader_conf_value(text, "editor") == ""


def test_boot_entries_are_read_like_the_exporter() -> None:
    entry = nixos.parse_entry(
        "nixos-work-generation-7.conf",
        "title NixOS [work]\nversion Generation 7 26.05\noptions root=x init=/nix/store/abc-nixos/init q\n",
    )
    assert (entry.version_generation, entry.other_profile, entry.toplevel) == (7, True, "/nix/store/abc-nixos")
    plain = nixos.parse_entry("nixos-x.conf", "title NixOS\nversion Generation 2\n")
    assert (plain.version_generation, plain.other_profile, plain.toplevel) == (2, False, None)


def test_glob_choice_takes_the_newest_entry_of_the_system_profile() -> None:
    entries = (
        nixos.parse_entry("nixos-a.conf", "title NixOS\nversion Generation 2\n"),
        nixos.parse_entry("nixos-b.conf", "title NixOS\nversion Generation 3\n"),
        nixos.parse_entry("nixos-w.conf", "title NixOS [work]\nversion Generation 9\n"),
    )
    assert nixos.find_entry(entries, "nixos-*").file == "nixos-b.conf"
    assert nixos.find_entry(entries, "nixos-a").file == "nixos-a.conf"
    assert nixos.find_entry(entries, "nixos-zz.conf") is None


def test_reboot_pending_follows_kernel_of_the_boot_default(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.link(systems.paths.booted_system, three_generations["top1"])
    systems.link(systems.paths.current_system, three_generations["top1"])
    systems.entries_for(three_generations)
    # Boot default 2: same kernel and initrd as the booted system.
    systems.loader_conf(_loader("nixos-generation-2.conf"))
    assert nixos.reboot_pending(host_shell, systems.paths) is False
    # Boot default 3: new kernel.
    systems.loader_conf(_loader("nixos-generation-3.conf"))
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.reboot_pending is True
    assert len(state.reboot_reasons) == 1
    assert state.reboot_reasons[0].startswith("kernel: booted " + three_generations["k1"])


def test_reboot_pending_without_booted_system_says_why(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    state = nixos.probe_system(host_shell, systems.paths)
    with pytest.raises(NixosProbeError, match=r"host: .*booted-system does not resolve"):
        _ = state.reboot_pending


def test_reboot_pending_with_a_deleted_boot_generation_says_why(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.link(systems.paths.booted_system, three_generations["top1"])
    systems.loader_conf(_loader("nixos-generation-9.conf"))
    state = nixos.probe_system(host_shell, systems.paths)
    with pytest.raises(
        NixosProbeError, match=r"boot default is unknown .*'nixos-generation-9.conf'.* no entry"
    ):
        _ = state.reboot_pending


def test_dangling_generation_link_has_no_store_path(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    missing = "/nix/store/00000000000000000000000000000000-gone"
    assert not os.path.exists(missing)
    systems.link(f"{systems.paths.profiles_dir}/system-7-link", missing)
    state = nixos.probe_system(host_shell, systems.paths)
    assert state.generation(7) == nixos.Generation(7, None, None, None)
    assert state.newest_generation == 7


def test_probe_without_readlink_fails_loudly(systems: FakeSystems, scratch: Path) -> None:
    with HostShell("bare-node", scratch / "bare-stderr.log", env={"PATH": "/nonexistent"}) as bare:
        with pytest.raises(NixosProbeError, match=r"bare-node: the state probe exited with 3"):
            nixos.probe_system(bare, systems.paths)


def test_incomplete_output_is_rejected() -> None:
    with pytest.raises(NixosProbeError, match="node-a: the state probe's output is incomplete"):
        nixos.parse_probe_output("node-a", "gen\tsystem-1-link\t/nix/store/x\n", NixosPaths())


def test_boot_loader_reports_default_line_chosen_entry_and_every_entry(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    systems.entries_for(three_generations)
    systems.loader_conf(_loader("nixos-generation-2.conf"))
    loader = nixos.probe_system(host_shell, systems.paths).boot_loader
    assert loader.loader_conf_default == "nixos-generation-2.conf"
    assert loader.default_entry == "nixos-generation-2.conf"
    assert loader.default_system == three_generations["top2"]
    # Newest first, each with the system its init= boots.
    assert loader.entry_files == ("nixos-generation-3.conf", "nixos-generation-2.conf", "nixos-generation-1.conf")
    assert [entry.system for entry in loader.entries] == [
        three_generations["top3"], three_generations["top2"], three_generations["top1"]
    ]
    assert [e.file for e in loader.entries_for(three_generations["top1"])] == ["nixos-generation-1.conf"]
    assert loader.entries_for(None) == ()
    assert "nixos-generation-2.conf" in loader.describe()


def test_boot_loader_without_a_default_line_starts_the_newest_entry(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    # deploy-rs's activate.nixos deletes the `default` line after every switch.
    systems.entries_for(three_generations)
    systems.loader_conf("timeout 5\neditor 0\n")
    loader = nixos.probe_system(host_shell, systems.paths).boot_loader
    assert loader.loader_conf_default is None
    assert loader.default_entry == "nixos-generation-3.conf"
    assert loader.default_system == three_generations["top3"]


def test_boot_loader_without_loader_conf_has_no_entries(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    loader = nixos.probe_system(host_shell, systems.paths).boot_loader
    assert (loader.loader_conf_default, loader.default_entry, loader.entries) == (None, None, ())


def test_test_profile_generations_say_when_a_test_branch_runs(
    systems: FakeSystems, three_generations: dict[str, str], host_shell: HostShell
) -> None:
    [testing] = systems.toplevels({"testing": (three_generations["k1"], three_generations["i1"])})
    _run("nix-env", "-p", f"{systems.paths.profiles_dir}/{systems.paths.test_profile_name}", "--set", testing)
    systems.link(systems.paths.current_system, testing)
    state = nixos.probe_system(host_shell, systems.paths)
    assert [(g.number, g.system) for g in state.test_generations] == [(1, testing)]
    assert state.running_test_generation == 1
    assert state.current_generation == -1, "a test branch is no generation of the system profile"
    assert [g.number for g in state.generations] == [1, 2, 3]
    systems.link(systems.paths.current_system, three_generations["top3"])
    state = nixos.probe_system(host_shell, systems.paths)
    assert (state.running_test_generation, state.current_generation) == (-1, 3)
