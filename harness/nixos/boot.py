"""systemd-boot's choices as the probes and the generation exporter read them: entry ids,
loader.conf values, entry files, which entry a choice selects, and the boot loader's summary.

The rules are stated in harness/nixos/__init__.py's docstring; entry files and loader.conf are the ones
nixpkgs' systemd-boot-builder.py writes (`nixos-generation-N.conf`, or `nixos-<p>-generation-N`
for profiles/system-profiles/<p>; loader.conf's `default` names the entry of the configuration
being activated, and deploy-rs's activate.nixos deletes that line after a switch).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

NO_GENERATION = -1

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
class BootLoader:
    """What the ESP says the next boot starts: loader.conf's `default` line, the entry chosen
    (BootDefault's rules) and every entry file, so a scenario can assert all three."""

    loader_conf_default: str | None  # the `default` value; None: no line (or no loader.conf)
    default_entry: str | None  # file name of the entry the next boot starts
    default_system: str | None  # the NixOS toplevel that entry boots
    entries: tuple[BootEntry, ...]  # every entry file, newest "version Generation" first

    @property
    def entry_files(self) -> tuple[str, ...]:
        return tuple(entry.file for entry in self.entries)

    def entries_for(self, system: str | None) -> tuple[BootEntry, ...]:
        """The entries whose init= boots `system` (a NixOS toplevel)."""
        return tuple(entry for entry in self.entries if system and entry.system == system)

    def describe(self) -> str:
        listed = ", ".join(
            f"{entry.file} (Generation {entry.version_generation}: {entry.system})" for entry in self.entries
        )
        return (
            f"loader.conf default {self.loader_conf_default!r}, next boot {self.default_entry!r} "
            f"({self.default_system}); entries: {listed or 'none'}"
        )
