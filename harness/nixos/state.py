"""The data model of the NixOS probes: where NixOS keeps its state (NixosPaths), a machine's
generations, and SystemState, which decides current / booted / boot default / reboot pending
from the facts one probe read (rules: harness/nixos/__init__.py's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from harness.nixos.boot import (
    NO_GENERATION,
    BootDefault,
    BootDefaultSource,
    BootEntry,
    BootLoader,
    _is_glob,
    find_entry,
    loader_conf_value,
)

# systemd-boot's vendor GUID: its EFI variables are <Name>-<GUID> under efivarfs.
SYSTEMD_BOOT_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFI_VARIABLES = ("LoaderEntryOneShot", "LoaderEntryDefault", "LoaderEntryLastBooted")


class NixosProbeError(RuntimeError):
    """A probe could not read or decide something; says on which node and what to do."""


@dataclass(frozen=True)
class NixosPaths:
    """Where NixOS keeps its state; every path overridable so host tests use a temp root.
    The defaults are the exporter's (NIXOS_GEN_* defaults in generation-exporter.sh)."""

    profiles_dir: str = "/nix/var/nix/profiles"
    profile_name: str = "system"
    current_system: str = "/run/current-system"
    booted_system: str = "/run/booted-system"
    # systemd-boot writes loader.conf on the ESP (nixpkgs systemd-boot-builder.py: LOADER_CONF =
    # EFI_SYS_MOUNT_POINT / "loader/loader.conf"; efiSysMountPoint defaults to /boot).
    loader_conf: str = "/boot/loader/loader.conf"
    boot_entries: str = "/boot/loader/entries"  # XBOOTLDR hosts: <xbootldr>/loader/entries
    efivars: str = "/sys/firmware/efi/efivars"
    # The fleet's test-branch profile (lib/test-branch-activation.nix), next to `system`.
    test_profile_name: str = "homelab-test"

    @classmethod
    def under(cls, root: str) -> NixosPaths:
        """The default layout below `root` (for tests that fake a machine in a directory)."""
        base = cls()
        root = root.rstrip("/")
        return cls(
            profiles_dir=root + base.profiles_dir,
            profile_name=base.profile_name,
            current_system=root + base.current_system,
            booted_system=root + base.booted_system,
            loader_conf=root + base.loader_conf,
            boot_entries=root + base.boot_entries,
            efivars=root + base.efivars,
            test_profile_name=base.test_profile_name,
        )


@dataclass(frozen=True)
class Generation:
    number: int
    store_path: str | None  # what the link resolves to; None: the link dangles
    kernel: str | None = None
    initrd: str | None = None
    # The NixOS toplevel the generation stands for (see the module docstring). For a plain
    # `nix-env --set <toplevel>` it equals store_path; for deploy-rs's activatable buildEnv it
    # is the toplevel inside.
    system: str | None = None


@dataclass(frozen=True)
class SystemState:
    """Everything the probes read from one machine, in one round trip."""

    node: str
    generations: tuple[Generation, ...]
    profile_link: str | None  # what `<profiles>/system` points at, e.g. "system-3-link"
    profile_link_valid: bool  # that target is an existing system-N-link (the exporter's -L)
    profile_system: str | None  # system_of(<profiles>/system)
    current_system: str | None  # /run/current-system resolved
    booted_system: str | None  # /run/booted-system resolved
    booted_kernel: str | None
    booted_initrd: str | None
    loader_conf: str | None  # file content, None when there is no loader.conf
    paths: NixosPaths = field(default_factory=NixosPaths)
    current_system_of: str | None = None  # system_of(/run/current-system)
    booted_system_of: str | None = None  # system_of(/run/booted-system)
    boot_entries: tuple[BootEntry, ...] = ()
    efi_variables: Mapping[str, str] = field(default_factory=dict)
    # Generations of the test-branch profile (never boot entries, never the boot default).
    test_generations: tuple[Generation, ...] = ()

    @property
    def running_test_generation(self) -> int:
        """N of the test-profile generation whose system runs now, else -1 (a test branch
        runs exactly when this is not -1 and current_generation is -1)."""
        numbers = [
            g.number for g in self.test_generations if self.current_system_of and g.system == self.current_system_of
        ]
        return max(numbers, default=NO_GENERATION)

    @property
    def boot_loader(self) -> BootLoader:
        """loader.conf's default line, the entry the next boot starts, every entry on the ESP."""
        default = self.boot_default
        conf_default = loader_conf_value(self.loader_conf, "default") if self.loader_conf else ""
        ordered = sorted(self.boot_entries, key=lambda e: (e.version_generation, e.file), reverse=True)
        return BootLoader(
            loader_conf_default=conf_default or None,
            default_entry=default.entry,
            default_system=default.system,
            entries=tuple(ordered),
        )

    def generation_of(self, system: str | None) -> int:
        """The shared definition: highest N whose link has `system`, else -1."""
        if not system:
            return NO_GENERATION
        numbers = [g.number for g in self.generations if g.system == system]
        return max(numbers, default=NO_GENERATION)

    def generation(self, number: int) -> Generation | None:
        return next((g for g in self.generations if g.number == number), None)

    @property
    def newest_generation(self) -> int:
        """The highest system-N-link that exists (deleted generations are gone)."""
        return max((g.number for g in self.generations), default=NO_GENERATION)

    @property
    def profile_generation(self) -> int:
        """N of the `system -> system-N-link` profile link (the exporter's profile metric)."""
        match = re.fullmatch(
            re.escape(self.paths.profile_name) + r"-([0-9]+)-link", self.profile_link or ""
        )
        if match is None or not self.profile_link_valid:
            return NO_GENERATION
        return int(match[1])

    @property
    def current_generation(self) -> int:
        return self.generation_of(self.current_system_of)

    @property
    def booted_generation(self) -> int:
        return self.generation_of(self.booted_system_of)

    @property
    def boot_default(self) -> BootDefault:
        if self.loader_conf is None:
            number = self.profile_generation if self.profile_system else NO_GENERATION
            if number == NO_GENERATION:
                return BootDefault(NO_GENERATION, "none")
            return BootDefault(number, "profile-link", system=self.profile_system)
        source: BootDefaultSource = "efi-variable"
        choice = self.efi_variables.get("LoaderEntryOneShot", "")
        choice = choice or self.efi_variables.get("LoaderEntryDefault", "")
        if not choice:
            source = "loader.conf"
            choice = loader_conf_value(self.loader_conf, "preferred")
            choice = choice or loader_conf_value(self.loader_conf, "default")
        if choice == "@saved":
            source = "efi-variable"
            choice = self.efi_variables.get("LoaderEntryLastBooted", "")
        if not choice:
            source, choice = "newest-entry", "*"
        elif _is_glob(choice):
            source = "newest-entry"
        entry = find_entry(self.boot_entries, choice)
        if entry is None:
            return BootDefault(NO_GENERATION, source, choice=choice)
        system = entry.system or None
        number = self.generation_of(system)
        if number == NO_GENERATION and not entry.other_profile:
            number = entry.version_generation
        if system is None and number != NO_GENERATION:
            generation = self.generation(number)
            system = generation.system if generation else None
        return BootDefault(number, source, entry.file, choice, system, entry.other_profile)

    def _boot_kernel_initrd(self) -> tuple[str | None, str | None]:
        default = self.boot_default
        if default.system is None:
            return None, None
        for entry in self.boot_entries:
            if entry.file == default.entry and entry.system == default.system:
                return entry.kernel, entry.initrd
        for generation in self.generations:
            if generation.system == default.system:
                return generation.kernel, generation.initrd
        return None, None

    @property
    def reboot_pending_metric(self) -> int:
        """1 / 0 / -1 exactly as the exporter's nixos_reboot_pending."""
        boot_kernel, boot_initrd = self._boot_kernel_initrd()
        known = (self.booted_kernel, self.booted_initrd, boot_kernel, boot_initrd)
        if not all(known):
            return -1
        return int((self.booted_kernel, self.booted_initrd) != (boot_kernel, boot_initrd))

    @property
    def reboot_pending(self) -> bool:
        return bool(self.reboot_reasons)

    @property
    def reboot_reasons(self) -> tuple[str, ...]:
        """Which of kernel/initrd the next boot changes; raises if it cannot tell."""
        default = self.boot_default
        if default.number == NO_GENERATION and default.system is None:
            where = (
                f"loader.conf/EFI choose {default.choice!r}, which matches no entry in "
                f"{self.paths.boot_entries}"
                if default.source != "none"
                else f"no loader.conf and no {self.paths.profile_name} profile link"
            )
            raise NixosProbeError(
                f"{self.node}: the boot default is unknown ({where}); cannot compare kernels. "
                "Was the generation deleted, or is the ESP not mounted?"
            )
        if self.booted_system is None:
            raise NixosProbeError(
                f"{self.node}: {self.paths.booted_system} does not resolve; cannot tell what "
                "was booted. Is this a NixOS machine that has finished booting?"
            )
        boot_kernel, boot_initrd = self._boot_kernel_initrd()
        if boot_kernel is None or boot_initrd is None:
            raise NixosProbeError(
                f"{self.node}: boot default generation {default.number} (from {default.source}"
                f"{', entry ' + default.entry if default.entry else ''}) has no readable kernel "
                f"and initrd (system {default.system}); cannot compare kernels. Was it "
                "garbage-collected?"
            )
        reasons = []
        if boot_kernel != self.booted_kernel:
            reasons.append(f"kernel: booted {self.booted_kernel}, next boot {boot_kernel}")
        if boot_initrd != self.booted_initrd:
            reasons.append(f"initrd: booted {self.booted_initrd}, next boot {boot_initrd}")
        return tuple(reasons)

    def metrics(self) -> dict[str, int]:
        """The exporter's gauges (all but config age) as this probe computes them."""
        return {
            "nixos_current_generation": self.current_generation,
            "nixos_booted_generation": self.booted_generation,
            "nixos_boot_generation": self.boot_default.number,
            "nixos_profile_generation": self.profile_generation,
            "nixos_reboot_pending": self.reboot_pending_metric,
        }

