"""NixOS state probes: profile generations, current / booted system, boot default, reboot pending.

Layer 4 (DESIGN.md §3, §8). Probes run shell commands on a machine-like object and parse stdout:
no Python in the guest, only bash and coreutils (`readlink -e`, `dirname`, `tail`, `tr`). Every
fact is gathered in one round trip by `probe_system`; the small helpers below call it for one
fact each.

The rules are the fleet's generation exporter's (modules/services/monitoring/
generation-exporter.sh, whose header states them), so a probe and the exporter's metrics never
disagree about the same machine (tests/nixos/test_nixos_probe_parity.py runs both on the same
fake roots):

- the *system* of a path P is the NixOS toplevel P stands for: the directory holding the file
  `P/nixos-version` resolves to; without nixos-version, P's own resolved path. deploy-rs puts an
  `activatable-*` buildEnv into the profile (its activate-rs runs `nix-env --set <closure>`), so
  a `system-N-link` never resolves to the same store path as /run/current-system: only their
  systems compare;
- a generation number is the N whose `system-N-link` has the system asked about; several: the
  highest; none: -1;
- the boot default, when systemd-boot's loader.conf exists on the ESP, is the entry systemd-boot
  chooses: the EFI variables LoaderEntryOneShot, then LoaderEntryDefault, then loader.conf's
  `preferred` and `default` (`@saved` means LoaderEntryLastBooted). No choice at all (deploy-rs's
  activate.nixos deletes the `default` line) or a glob: the matching entry of the system profile
  with the highest "version Generation N". Entry ids ignore boot counters (`+T[-D]`), so newer
  nixpkgs' `nixos-<hash>.conf` names work as well as `nixos-generation-N.conf`. The entry's
  `init=` names its toplevel, whose generation is the answer; failing that, N from its version
  line. Without a loader.conf: the N of the `system -> system-N-link` profile link;
- reboot pending: the booted kernel or initrd differs from the boot default system's.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal, Mapping, Protocol

NO_GENERATION = -1
# systemd-boot's vendor GUID: its EFI variables are <Name>-<GUID> under efivarfs.
SYSTEMD_BOOT_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFI_VARIABLES = ("LoaderEntryOneShot", "LoaderEntryDefault", "LoaderEntryLastBooted")


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


BootDefaultSource = Literal["efi-variable", "loader.conf", "newest-entry", "profile-link", "none"]


@dataclass(frozen=True)
class BootDefault:
    """The generation the next boot starts, and where that fact came from."""

    number: int
    source: BootDefaultSource
    entry: str | None = None  # the boot entry file chosen (systemd-boot), e.g. "nixos-abc.conf"
    choice: str | None = None  # what chose it: an EFI variable's or loader.conf's value
    system: str | None = None  # the NixOS toplevel the next boot starts, if known
    other_profile: bool = False  # a system-profiles/<p> entry ("NixOS [p]"), not `system`


@dataclass(frozen=True)
class BootEntry:
    """One systemd-boot entry file, as read_entry() in the exporter sees it."""

    file: str  # file name in the entries directory
    version_generation: int  # N from "version Generation N ...", else -1
    other_profile: bool  # title "NixOS [profile]"
    toplevel: str | None  # dirname of the `init=` option
    system: str | None  # system_of(toplevel), resolved on the machine
    kernel: str | None
    initrd: str | None

    @property
    def id(self) -> str:
        return entry_id(self.file)


_BOOT_COUNTER = re.compile(r"^(.*)\+[0-9]+(-[0-9]+)?$")


def entry_id(file_name: str) -> str:
    """An entry file's id as systemd-boot sees it: the name without a boot counter (+T[-D])."""
    name = file_name.rsplit("/", 1)[-1]
    if name.endswith(".conf"):
        name = name[: -len(".conf")]
    match = _BOOT_COUNTER.match(name)
    if match:
        name = match[1]
    return name + ".conf"


def loader_conf_value(text: str, key: str) -> str:
    """A loader.conf value (the last occurrence wins, as in systemd-boot); "" if absent."""
    value = ""
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s+(.*\S)\s*$")
    for line in text.splitlines():
        match = pattern.match(line.rstrip("\r"))
        if match:
            value = match[1]
    return value


def parse_entry(
    file_name: str,
    text: str,
    system: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
) -> BootEntry:
    """Read an entry's title, version and init= the way the exporter's read_entry() does."""
    version_generation = NO_GENERATION
    other_profile = False
    toplevel = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if re.match(r"^title\s.* \[.*\]", line):
            other_profile = True
        elif match := re.match(r"^version\s+Generation\s+([0-9]+)", line):
            version_generation = int(match[1])
        elif re.match(r"^options\s", line):
            for word in line.split():
                if word.startswith("init="):
                    toplevel = word[len("init=") :].rsplit("/", 1)[0] or "/"
    return BootEntry(file_name, version_generation, other_profile, toplevel, system, kernel, initrd)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def find_entry(entries: tuple[BootEntry, ...], pattern: str) -> BootEntry | None:
    """The entry for an id (with or without .conf), or for a glob the system-profile entry with
    the highest version generation (systemd-boot sorts newest first)."""
    if not _is_glob(pattern):
        for entry in entries:
            if entry.id in (pattern, pattern + ".conf"):
                return entry
        return None
    best: BootEntry | None = None
    for entry in entries:
        if not (fnmatch.fnmatchcase(entry.id, pattern) or fnmatch.fnmatchcase(entry.id[:-5], pattern)):
            continue
        if entry.other_profile:
            continue
        if entry.version_generation > (best.version_generation if best else NO_GENERATION):
            best = entry
    return best


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


_END_MARKER = "probe-end"


def _probe_script(paths: NixosPaths) -> str:
    """One bash command that prints tab-separated facts; every `readlink -e` may print nothing."""
    q = shlex.quote
    profile = f"{paths.profiles_dir}/{paths.profile_name}"
    efi = " ".join(q(f"{name}-{SYSTEMD_BOOT_GUID}") for name in EFI_VARIABLES)
    # A subshell: `exit`, `shopt` and the functions must not touch a persistent backdoor shell.
    return (
        "( "
        + "\n".join(
            [
                # Without readlink every fact would silently read as "absent": fail loudly instead.
                "command -v readlink >/dev/null && command -v dirname >/dev/null || "
                '{ echo "probe needs readlink and dirname (coreutils)"; exit 3; }',
                "shopt -s nullglob",
                # system_of: the exporter's rule, verbatim in behaviour.
                "ndh_sys() { local v; if v=$(readlink -e -- \"$1/nixos-version\" 2>/dev/null); "
                'then dirname -- "$v"; else readlink -e -- "$1" 2>/dev/null || true; fi; }',
                'ndh_rl() { readlink -e -- "$1" 2>/dev/null || true; }',
                f"for l in {q(paths.profiles_dir)}/{q(paths.profile_name)}-*-link; do "
                '[ -L "$l" ] || continue; s=$(ndh_sys "$l"); '
                'printf "gen\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "${l##*/}" "$(ndh_rl "$l")" "$s" '
                '"$(ndh_rl "$l/kernel")" "$(ndh_rl "$l/initrd")"; done',
                f"t=$(readlink -- {q(profile)} 2>/dev/null || true); t=${{t##*/}}; "
                f'if [ -n "$t" ] && [ -L {q(paths.profiles_dir)}/"$t" ]; then v=1; else v=0; fi; '
                f'printf "profile\\t%s\\t%s\\t%s\\n" "$t" "$v" "$(ndh_sys {q(profile)})"',
                f'printf "current\\t%s\\t%s\\n" "$(ndh_rl {q(paths.current_system)})" '
                f'"$(ndh_sys {q(paths.current_system)})"',
                f'printf "booted\\t%s\\t%s\\t%s\\t%s\\n" "$(ndh_rl {q(paths.booted_system)})" '
                f'"$(ndh_sys {q(paths.booted_system)})" '
                f'"$(ndh_rl {q(paths.booted_system + "/kernel")})" '
                f'"$(ndh_rl {q(paths.booted_system + "/initrd")})"',
                f"if [ -f {q(paths.loader_conf)} ]; then "
                'while IFS= read -r x || [ -n "$x" ]; do printf "loader\\t%s\\n" "$x"; done < '
                f'{q(paths.loader_conf)}; printf "loader-present\\n"; fi',
                # Each entry: its lines, then the system its init= names (resolved here, where
                # the store is) with that system's kernel and initrd.
                f"for e in {q(paths.boot_entries)}/*.conf; do [ -f \"$e\" ] || continue; "
                'n=${e##*/}; top=; while IFS= read -r x || [ -n "$x" ]; do '
                'printf "entry\\t%s\\t%s\\n" "$n" "$x"; x=${x%$\'\\r\'}; '
                'if [[ $x =~ ^options[[:space:]] ]]; then read -ra ws <<< "$x"; '
                'for w in "${ws[@]}"; do if [[ $w == init=* ]]; then '
                'top=$(dirname -- "${w#init=}"); fi; done; fi; done < "$e"; '
                's=; k=; i=; if [ -n "$top" ]; then s=$(ndh_sys "$top"); fi; '
                'if [ -n "$s" ]; then k=$(ndh_rl "$s/kernel"); i=$(ndh_rl "$s/initrd"); fi; '
                'printf "entry-system\\t%s\\t%s\\t%s\\t%s\\n" "$n" "$s" "$k" "$i"; done',
                f"for f in {efi}; do p={q(paths.efivars)}/\"$f\"; [ -r \"$p\" ] || continue; "
                'printf "efi\\t%s\\t%s\\n" "${f%%-*}" "$(tail -c +5 -- "$p" | tr -d \'\\000\')"; '
                "done",
                f'printf "{_END_MARKER}\\n"',
            ]
        )
        + " )"
    )


def _none_if_empty(value: str) -> str | None:
    return value or None


def _fields(rest: str, count: int) -> list[str]:
    parts = rest.split("\t")
    return (parts + [""] * count)[:count]


def parse_probe_output(node: str, output: str, paths: NixosPaths) -> SystemState:
    lines = output.splitlines()
    if _END_MARKER not in lines:
        raise NixosProbeError(
            f"{node}: the state probe's output is incomplete (no {_END_MARKER!r} line); "
            f"got {output[-300:]!r}. Check the node's shell and serial log."
        )
    link_pattern = re.compile(re.escape(paths.profile_name) + r"-(\d+)-link")
    generations: list[Generation] = []
    profile_link = profile_system = None
    profile_valid = False
    current = current_of = booted = booted_of = booted_kernel = booted_initrd = None
    loader_lines: list[str] = []
    loader_present = False
    entry_lines: dict[str, list[str]] = {}
    entry_systems: dict[str, tuple[str | None, str | None, str | None]] = {}
    efi: dict[str, str] = {}
    for line in lines:
        kind, _, rest = line.partition("\t")
        if kind == "gen":
            name, store, system, kernel, initrd = _fields(rest, 5)
            match = link_pattern.fullmatch(name)
            if match is not None:  # skip e.g. "system-foo-link" from other tools
                generations.append(
                    Generation(
                        int(match[1]),
                        _none_if_empty(store),
                        _none_if_empty(kernel),
                        _none_if_empty(initrd),
                        _none_if_empty(system),
                    )
                )
        elif kind == "profile":
            target, valid, system = _fields(rest, 3)
            profile_link, profile_valid = _none_if_empty(target), valid == "1"
            profile_system = _none_if_empty(system)
        elif kind == "current":
            current, current_of = (_none_if_empty(f) for f in _fields(rest, 2))
        elif kind == "booted":
            booted, booted_of, booted_kernel, booted_initrd = (
                _none_if_empty(f) for f in _fields(rest, 4)
            )
        elif kind == "loader":
            loader_lines.append(rest)
        elif kind == "loader-present":
            loader_present = True
        elif kind == "entry":
            name, _, text = rest.partition("\t")
            entry_lines.setdefault(name, []).append(text)
        elif kind == "entry-system":
            name, system, kernel, initrd = _fields(rest, 4)
            entry_lines.setdefault(name, [])
            entry_systems[name] = tuple(_none_if_empty(f) for f in (system, kernel, initrd))  # type: ignore[assignment]
        elif kind == "efi":
            name, value = _fields(rest, 2)
            efi[name] = value
    entries = tuple(
        parse_entry(name, "\n".join(text), *entry_systems.get(name, (None, None, None)))
        for name, text in sorted(entry_lines.items())
    )
    return SystemState(
        node=node,
        generations=tuple(sorted(generations, key=lambda g: g.number)),
        profile_link=profile_link,
        profile_link_valid=profile_valid,
        profile_system=profile_system,
        current_system=current,
        booted_system=booted,
        booted_kernel=booted_kernel,
        booted_initrd=booted_initrd,
        loader_conf="\n".join(loader_lines) + "\n" if loader_present else None,
        paths=paths,
        current_system_of=current_of,
        booted_system_of=booted_of,
        boot_entries=entries,
        efi_variables=efi,
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
