"""NixOS state probes: profile generations, current / booted system, boot default, reboot pending.

Probes run shell commands on a machine-like object and parse stdout:
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
- the boot loader (`SystemState.boot_loader`): loader.conf's `default` line, the entry the next
  boot starts (the boot default's entry) and every entry file on the ESP with the system it boots;
- test branches run from the fleet's own `homelab-test` profile (lib/test-branch-activation.nix):
  `test_generations` lists it, `running_test_generation` is its N that runs now, else -1.

Modules: state.py (the model and the decisions), boot.py (systemd-boot's rules),
probe.py (the guest command and its parser); this package re-exports their public names.
"""

from __future__ import annotations

# The model, the boot-loader rules and the probe live in their own modules; their public names
# are re-exported here, where scenarios and tests import them from.
from harness.nixos.boot import (  # noqa: F401
    NO_GENERATION,
    BootDefault,
    BootDefaultSource,
    BootEntry,
    BootLoader,
    entry_id,
    find_entry,
    loader_conf_value,
    parse_entry,
)
from harness.nixos.probe import parse_probe_output, probe_script  # noqa: F401
from harness.vm.guest import ShellMachine
from harness.nixos.state import (  # noqa: F401
    EFI_VARIABLES,
    SYSTEMD_BOOT_GUID,
    Generation,
    NixosPaths,
    NixosProbeError,
    SystemState,
)

__all__ = [
    "NO_GENERATION", "BootDefault", "BootDefaultSource", "BootEntry", "BootLoader", "entry_id",
    "find_entry", "loader_conf_value", "parse_entry", "parse_probe_output", "EFI_VARIABLES",
    "SYSTEMD_BOOT_GUID", "Generation", "NixosPaths", "NixosProbeError", "ShellMachine",
    "SystemState", "probe_system",
    "current_generation", "booted_generation", "boot_default_generation", "reboot_pending",
]


def probe_system(
    machine: ShellMachine, paths: NixosPaths | None = None, timeout: float | None = 60
) -> SystemState:
    """Read generations, current/booted system and the boot default in one round trip."""
    paths = paths or NixosPaths()
    status, output = machine.execute(probe_script(paths), timeout=timeout)
    if status != 0:
        raise NixosProbeError(
            f"{machine.name}: the state probe exited with {status}; output: {output[-300:]!r}. "
            "The node needs bash and coreutils; check its serial log for the shell's stderr."
        )
    return parse_probe_output(machine.name, output, paths)


def current_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> int:
    return probe_system(machine, paths).current_generation


def booted_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> int:
    return probe_system(machine, paths).booted_generation


def boot_default_generation(machine: ShellMachine, paths: NixosPaths | None = None) -> BootDefault:
    return probe_system(machine, paths).boot_default


def reboot_pending(machine: ShellMachine, paths: NixosPaths | None = None) -> bool:
    return probe_system(machine, paths).reboot_pending
