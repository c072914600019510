"""Reading a rehearsal's observations off a machine through its shell (anything with `name`
and `execute`): the harness's NixOS probes for generations and systems, systemd for failed
units and their journal, readlink for the booted system's links. No Python in the guest."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.nixos import NixosPaths, SystemState, probe_system
from harness.nixos.probe import COREUTILS_GUARD
from harness.vm.guest import ShellMachine

from .plan import BOOTED_LINKS

JOURNAL_LINES = 30


class ObservationError(RuntimeError):
    """A twin could not be read; the message names the twin and the command."""


def _run(machine: ShellMachine, command: str, timeout: float = 60) -> str:
    status, output = machine.execute(command, timeout=timeout)
    if status != 0:
        raise ObservationError(f"{machine.name}: `{command}` exited {status}: {output[-300:]!r}")
    return output


def booted_links(machine: ShellMachine, paths: NixosPaths | None = None) -> dict[str, str | None]:
    """What the booted system's kernel, initrd and kernel-modules resolve to (None: missing)."""
    booted = (paths or NixosPaths()).booted_system
    # The probes' guard: without `readlink -e` every link would read as missing ("reboot needed").
    script = f"{COREUTILS_GUARD}; " + "; ".join(
        f"printf '%s\\t%s\\n' {name} \"$(readlink -e -- {shlex.quote(booted + '/' + name)} || true)\""
        for name in BOOTED_LINKS
    )
    found: dict[str, str | None] = {}
    for line in _run(machine, script).splitlines():
        name, _, target = line.partition("\t")
        if name in BOOTED_LINKS:
            found[name] = target.strip() or None
    if set(found) != set(BOOTED_LINKS):
        raise ObservationError(f"{machine.name}: unexpected answer reading {booted}: {found}")
    return found


def failed_units(machine: ShellMachine) -> tuple[str, ...]:
    """The units systemd has in the failed state now."""
    output = _run(machine, "systemctl list-units --failed --all --plain --no-legend --no-pager")
    return tuple(line.split()[0] for line in output.splitlines() if line.strip())


def journal_tail(machine: ShellMachine, units: tuple[str, ...], lines: int = JOURNAL_LINES) -> str:
    """The last journal lines of these units (empty when there are none)."""
    if not units:
        return ""
    selectors = " ".join(f"-u {shlex.quote(unit)}" for unit in units)
    status, output = machine.execute(f"journalctl --no-pager -o short -n {int(lines)} {selectors}", timeout=60)
    return output if status == 0 else f"(journalctl exited {status}: {output[-300:]})"


@dataclass(frozen=True)
class Activation:
    """The part of a host's result read right after the deploy."""

    activated: bool
    rolled_back: bool
    failed_units: tuple[str, ...]
    journal_tail: str
    state: SystemState


def activation(machine: ShellMachine, before: SystemState, head_system: str, mode: str,
               paths: NixosPaths | None = None) -> Activation:
    """Did the head's system take (switch: it runs; boot: it is the boot default), or did the
    twin go back to what it ran before? Call it once magic rollback's confirm timeout passed."""
    after = probe_system(machine, paths)
    if mode == "boot":
        activated = after.boot_default.system == head_system
    else:
        activated = after.current_system_of == head_system
    # Rolled back: the head's system was switched to in this boot (its activation logged it)
    # and the base's runs again. A deploy that never reached the twin is no rollback.
    rolled_back = (after.current_system_of == before.current_system_of != head_system
                   and switched_to(machine, head_system))
    units = failed_units(machine)
    return Activation(activated, rolled_back, units, journal_tail(machine, units), after)


def switched_to(machine: ShellMachine, system: str) -> bool:
    """Did switch-to-configuration switch to `system` during this boot? It logs "switching to
    system configuration <toplevel>" (identifier nixos) each time it activates one."""
    line = f"switching to system configuration {system}"
    status, output = machine.execute(
        f"journalctl -b --no-pager -o cat -t nixos | grep -cxF -- {shlex.quote(line)} || true", timeout=60)
    if status != 0 or not output.strip().isdigit():
        raise ObservationError(f"{machine.name}: reading the journal for {line!r} failed: {output[-300:]!r}")
    return int(output.strip()) > 0


def booted_system(machine: ShellMachine, paths: NixosPaths | None = None) -> str | None:
    """The system the twin booted (the probes' rule for what /run/booted-system stands for)."""
    return probe_system(machine, paths).booted_system_of
