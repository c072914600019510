"""NixOS state probes: profile generations, current / booted system, boot default, reboot pending.

Layer 4 (DESIGN.md §3, §8). Probes run shell commands on a machine-like object and parse stdout:
no Python in the guest, only bash and coreutils (`readlink -e`, `sed`). Everything is gathered
in one round trip by `probe_system`; the small helpers below call it for one fact each.

Definitions shared with the fleet's generation exporter (DESIGN.md §8):
- a generation number is the N whose `system-N-link` resolves to the same store path as the
  thing asked about; absent: -1; several links to the same path: the highest N;
- the boot default is the generation systemd-boot's loader.conf names; without a loader.conf
  it is the generation the `system` profile link points at (`system -> system-N-link`, read
  from the link name, which is exact even when two generations share a store path).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Literal, Protocol

NO_GENERATION = -1


class ShellMachine(Protocol):
    """What the probes, the deploy runner and the cache helpers need from a machine.

    harness.vm.machine.Machine provides it: `execute` runs a shell command (in a subshell) and
    returns (exit status, stdout); stderr goes to the serial log. When `timeout` seconds pass
    it raises harness.vm.errors.CommandTimeout (other implementations: TimeoutError).
    """

    name: str

    def execute(self, command: str, *, timeout: float | None = ...) -> tuple[int, str]: ...


class NixosProbeError(RuntimeError):
    """A probe could not read or decide something; says on which node and what to do."""


@dataclass(frozen=True)
class NixosPaths:
    """Where NixOS keeps its state; every path overridable so host tests use a temp root."""

    profiles_dir: str = "/nix/var/nix/profiles"
    profile_name: str = "system"
    current_system: str = "/run/current-system"
    booted_system: str = "/run/booted-system"
    # systemd-boot writes loader.conf on the ESP (nixpkgs systemd-boot-builder.py: LOADER_CONF =
    # EFI_SYS_MOUNT_POINT / "loader/loader.conf"; efiSysMountPoint defaults to /boot).
    loader_conf: str = "/boot/loader/loader.conf"

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
        )


@dataclass(frozen=True)
class Generation:
    number: int
    store_path: str | None  # None: the link dangles (its store path is gone)
    kernel: str | None = None
    initrd: str | None = None


BootDefaultSource = Literal["loader.conf", "profile-link", "none"]


@dataclass(frozen=True)
class BootDefault:
    """The generation the next boot starts, and where that fact came from."""

    number: int
    source: BootDefaultSource
    entry: str | None = None  # the loader.conf `default` value, as written
    profile: str | None = None  # a system-profiles/<profile> entry, not the main system profile
    specialisation: str | None = None


# systemd-boot-builder.py, generation_conf_filename(): "nixos" [-<profile>] "-generation-" N
# [-specialisation-<name>] ".conf"; write_loader_conf() writes "default <that name>".
_LOADER_ENTRY = re.compile(
    r"^nixos(?:-(?P<profile>.+?))?-generation-(?P<number>\d+)"
    r"(?:-specialisation-(?P<specialisation>.+?))?(?:\.conf)?$"
)


def parse_loader_default(loader_conf: str) -> BootDefault | None:
    """The default entry of a systemd-boot loader.conf, or None if it names no NixOS entry."""
    for line in loader_conf.splitlines():
        key, _, value = line.strip().partition(" ")
        if key != "default":
            continue
        entry = value.strip()
        match = _LOADER_ENTRY.match(entry)
        if match is None:
            return None
        return BootDefault(
            number=int(match["number"]),
            source="loader.conf",
            entry=entry,
            profile=match["profile"],
            specialisation=match["specialisation"],
        )
    return None


@dataclass(frozen=True)
class SystemState:
    """Everything the probes read from one machine, in one round trip."""

    node: str
    generations: tuple[Generation, ...]
    profile_link: str | None  # what `<profiles>/system` points at, e.g. "system-3-link"
    current_system: str | None
    booted_system: str | None
    booted_kernel: str | None
    booted_initrd: str | None
    loader_conf: str | None  # file content, None when there is no loader.conf
    paths: NixosPaths = field(default_factory=NixosPaths)

    def generation_of(self, store_path: str | None) -> int:
        """The shared definition: highest N whose link resolves to store_path, else -1."""
        if store_path is None:
            return NO_GENERATION
        numbers = [g.number for g in self.generations if g.store_path == store_path]
        return max(numbers, default=NO_GENERATION)

    def generation(self, number: int) -> Generation | None:
        return next((g for g in self.generations if g.number == number), None)

    @property
    def newest_generation(self) -> int:
        return max((g.number for g in self.generations), default=NO_GENERATION)

    @property
    def current_generation(self) -> int:
        return self.generation_of(self.current_system)

    @property
    def booted_generation(self) -> int:
        return self.generation_of(self.booted_system)

    @property
    def boot_default(self) -> BootDefault:
        if self.loader_conf is not None:
            parsed = parse_loader_default(self.loader_conf)
            if parsed is not None:
                return parsed
        match = re.fullmatch(
            re.escape(self.paths.profile_name) + r"-(\d+)-link", self.profile_link or ""
        )
        if match is not None:
            return BootDefault(number=int(match[1]), source="profile-link")
        return BootDefault(number=NO_GENERATION, source="none")

    @property
    def reboot_pending(self) -> bool:
        return bool(self.reboot_reasons)

    @property
    def reboot_reasons(self) -> tuple[str, ...]:
        """Which of kernel/initrd the boot default would change; raises if it cannot tell."""
        default = self.boot_default
        if default.profile is not None or default.specialisation is not None:
            raise NixosProbeError(
                f"{self.node}: boot default is loader entry {default.entry!r} (a profile or "
                "specialisation entry); reboot detection only compares main-profile entries. "
                "Compare that entry's kernel and initrd by hand."
            )
        target = self.generation(default.number)
        if target is None or target.store_path is None:
            raise NixosProbeError(
                f"{self.node}: boot default generation {default.number} (from {default.source}) "
                f"has no live {self.paths.profile_name}-N-link in {self.paths.profiles_dir}; "
                "cannot compare kernels. Was the generation deleted or garbage-collected?"
            )
        if self.booted_system is None:
            raise NixosProbeError(
                f"{self.node}: {self.paths.booted_system} does not resolve; cannot tell what "
                "was booted. Is this a NixOS machine that has finished booting?"
            )
        reasons = []
        if target.kernel != self.booted_kernel:
            reasons.append(f"kernel: booted {self.booted_kernel}, next boot {target.kernel}")
        if target.initrd != self.booted_initrd:
            reasons.append(f"initrd: booted {self.booted_initrd}, next boot {target.initrd}")
        return tuple(reasons)


_END_MARKER = "probe-end"


def _probe_script(paths: NixosPaths) -> str:
    """One bash command that prints tab-separated facts; every `readlink -e` may print nothing."""
    q = shlex.quote
    profile = f"{paths.profiles_dir}/{paths.profile_name}"
    # A subshell: `exit` and `shopt` must not touch a persistent backdoor shell.
    return (
        "( "
        + "; ".join(
            [
                # Without readlink every fact would silently read as "absent": fail loudly instead.
                "command -v readlink >/dev/null || "
                '{ echo "probe needs readlink (coreutils)"; exit 3; }',
                "shopt -s nullglob",
                f"for l in {q(paths.profiles_dir)}/{q(paths.profile_name)}-*-link; do "
                'printf "gen\\t%s\\t%s\\t%s\\t%s\\n" "${l##*/}" "$(readlink -e -- "$l")" '
                '"$(readlink -e -- "$l/kernel")" "$(readlink -e -- "$l/initrd")"; done',
                f'printf "profile\\t%s\\n" "$(readlink -- {q(profile)})"',
                f'printf "current\\t%s\\n" "$(readlink -e -- {q(paths.current_system)})"',
                f'printf "booted\\t%s\\t%s\\t%s\\n" "$(readlink -e -- {q(paths.booted_system)})" '
                f'"$(readlink -e -- {q(paths.booted_system + "/kernel")})" '
                f'"$(readlink -e -- {q(paths.booted_system + "/initrd")})"',
                f"if [ -f {q(paths.loader_conf)} ]; then "
                'while IFS= read -r x || [ -n "$x" ]; do printf "loader\\t%s\\n" "$x"; done < '
                f'{q(paths.loader_conf)}; printf "loader-present\\n"; fi',
                f'printf "{_END_MARKER}\\n"',
            ]
        )
        + " )"
    )


def _none_if_empty(value: str) -> str | None:
    return value or None


def parse_probe_output(node: str, output: str, paths: NixosPaths) -> SystemState:
    lines = output.splitlines()
    if _END_MARKER not in lines:
        raise NixosProbeError(
            f"{node}: the state probe's output is incomplete (no {_END_MARKER!r} line); "
            f"got {output[-300:]!r}. Check the node's shell and serial log."
        )
    link_pattern = re.compile(re.escape(paths.profile_name) + r"-(\d+)-link")
    generations: list[Generation] = []
    profile_link = current = booted = booted_kernel = booted_initrd = None
    loader_lines: list[str] = []
    loader_present = False
    for line in lines:
        kind, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if kind == "gen":
            match = link_pattern.fullmatch(fields[0])
            if match is not None:  # skip e.g. "system-foo-link" from other tools
                store, kernel, initrd = (_none_if_empty(f) for f in (fields + ["", "", ""])[1:4])
                generations.append(Generation(int(match[1]), store, kernel, initrd))
        elif kind == "profile":
            profile_link = _none_if_empty(fields[0])
        elif kind == "current":
            current = _none_if_empty(fields[0])
        elif kind == "booted":
            booted, booted_kernel, booted_initrd = (
                _none_if_empty(f) for f in (fields + ["", "", ""])[:3]
            )
        elif kind == "loader":
            loader_lines.append(rest)
        elif kind == "loader-present":
            loader_present = True
    return SystemState(
        node=node,
        generations=tuple(sorted(generations, key=lambda g: g.number)),
        profile_link=profile_link,
        current_system=current,
        booted_system=booted,
        booted_kernel=booted_kernel,
        booted_initrd=booted_initrd,
        loader_conf="\n".join(loader_lines) + "\n" if loader_present else None,
        paths=paths,
    )


def probe_system(
    machine: ShellMachine, paths: NixosPaths | None = None, timeout: float | None = 60
) -> SystemState:
    """Read generations, current/booted system and the boot default in one round trip."""
    paths = paths or NixosPaths()
    status, output = machine.execute(_probe_script(paths), timeout=timeout)
    if status != 0:
        raise NixosProbeError(
            f"{machine.name}: the state probe exited with {status}; output: {output[-300:]!r}. "
            "The node needs bash and coreutils; check its serial log for the shell's stderr."
        )
    return parse_probe_output(machine.name, output, paths)


def profile_generations(
    machine: ShellMachine, paths: NixosPaths | None = None
) -> tuple[Generation, ...]:
    return probe_system(machine, paths).generations


def newest_profile_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> int:
    return probe_system(machine, paths).newest_generation


def current_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> int:
    return probe_system(machine, paths).current_generation


def booted_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> int:
    return probe_system(machine, paths).booted_generation


def boot_default_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> BootDefault:
    return probe_system(machine, paths).boot_default


def reboot_pending(machine: ShellMachine, paths: NixosPaths | None = None) -> bool:
    return probe_system(machine, paths).reboot_pending
