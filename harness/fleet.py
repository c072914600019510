"""A fleet: the machines of one test network, their VLAN switches, booted together and
snapshotted together. Declared with FleetSpec/NodeSpec; the image decides the start scripts."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from . import checkpoints, state_dirs, together
from .images import micro
from .specs import FleetSpec, Image, NodeSpec, check_node_names
from .vm import Machine, MachineError, QMPError, VdeSwitch, start_all

__all__ = ["PRISTINE", "Fleet", "FleetSpec", "Image", "NodeSpec"]

PRISTINE = "ndh-pristine"
# Besides the disk image, what a cold boot deletes so the start script recreates it: NixOS's
# qemu-vm.nix keeps a UEFI node's variable store in <cwd>/<name>-efi-vars.fd.
FRESH_BOOT_FILES = ("*-efi-vars.fd",)


def _first_line(exc: Exception) -> str:
    text = str(exc).split("\n", 1)[0]
    return text.split(": ", 1)[1] if text.startswith("machine ") and ": " in text else text


# QEMU's reasons that rule snapshots out for a machine for good (a writable raw drive such as a
# UEFI variable store, a 9p share). Any other savevm failure is an error of the run, not a
# reason to cold-boot (a full disk is the machine's own MachineError, harness/vm/monitor.py).
SNAPSHOTS_RULED_OUT = re.compile(
    r"does not support snapshots|No block device can accept snapshots|VirtFS|mount_tag|Migration is disabled"
)


# The longest unix socket a node has: its console (`<node dir>/shell`; `qmp` is shorter).
_NODE_SOCKET = "shell"
_SOCKET_PATH_MAX = 107  # bytes: sun_path holds 108 with the terminating NUL


def _check_socket_paths(state_dir: Path, spec: FleetSpec) -> None:
    """ValueError, naming the node and the limit, when a node's sockets would not fit in a unix
    socket address (QEMU would only say it cannot listen on or connect to them)."""
    for name in sorted(spec.nodes):
        path = state_dir / name / _NODE_SOCKET
        if len(str(path).encode()) > _SOCKET_PATH_MAX:
            room = _SOCKET_PATH_MAX - len(str(state_dir / "" / _NODE_SOCKET).encode()) - 1
            raise ValueError(
                f"fleet {spec.name}: node name {name!r} makes its console socket {path} "
                f"{len(str(path).encode())} bytes long, over the {_SOCKET_PATH_MAX} a unix socket "
                f"address holds: use a node name of at most {max(room, 0)} characters here, or a "
                f"shorter ${state_dirs.ENV}"
            )


class Fleet:
    def __init__(
        self,
        spec: FleetSpec,
        *,
        accel: str = "tcg",
        base_dir: Path | None = None,
        keep: bool = False,
        boot_timeout: float = 300,
        time_scale: float = 1.0,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        # Checked again here (a spec's node mapping can change after it was declared): a node's
        # name is a directory under the fleet's, never a path out of it.
        check_node_names(spec.name, list(spec.nodes))
        self.spec = spec
        self.image: Image = spec.image or micro.MICRO
        self.accel = accel
        self.keep = keep
        self.progress = progress
        # Unix socket paths must stay under 108 bytes: state_dirs keeps the state tree short.
        self.state_dir = Path(base_dir) if base_dir else state_dirs.make(spec.name)
        try:
            _check_socket_paths(self.state_dir, spec)
        except ValueError:
            if not base_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        self.switches: dict[int, VdeSwitch] = {}
        self.machines: dict[str, Machine] = {}
        # Slow guests (TCG) stretch every wait: boots and reboots here, QMP in each machine.
        self.time_scale = time_scale
        self.boot_timeout = boot_timeout * time_scale
        # Machines QEMU refused to snapshot, with QEMU's reason: they cold-boot in reset().
        self.cold_boot: dict[str, str] = {}

    @property
    def snapshots_supported(self) -> bool:
        """False once a machine refused the pristine snapshot and cold-boots per test instead."""
        return not self.cold_boot

    def __getitem__(self, name: str) -> Machine:
        try:
            return self.machines[name]
        except KeyError:
            raise KeyError(
                f"fleet {self.spec.name} has no node {name!r} (nodes: {', '.join(sorted(self.machines))})"
            ) from None

    def __iter__(self) -> Iterator[Machine]:
        return iter(self.machines.values())

    def boot(self) -> None:
        """Start every switch and machine; machines boot in parallel."""
        started = time.monotonic()
        try:
            scripts = self._start_scripts()
            vlans = sorted({v for node in self.spec.nodes.values() for v in node.vlans})
            for number in vlans:
                switch = VdeSwitch(number, self.state_dir / f"vde{number}.ctl", leash=not self.keep)
                switch.start()
                self.switches[number] = switch
            for name in sorted(self.spec.nodes):
                node = self.spec.nodes[name]
                node_dir = self.state_dir / name
                script = scripts[name]
                self.machines[name] = Machine(
                    name,
                    script,
                    node_dir,
                    vlans={v: self.switches[v].socket_dir for v in node.vlans},
                    allow_reboot=node.allow_reboot,
                    accel=self.accel,
                    accel_options=self.image.accel_options(self.accel),
                    snapshot_drive=self.image.snapshot_drive,
                    forward_ports=node.forward_ports,
                    boot_timeout=self.boot_timeout,
                    leash=not self.keep,
                    reattachable=self.keep,  # kept fleets are driven again by later processes
                    time_scale=self.time_scale,
                )
            slow = f"; waits x{self.time_scale:g}, boot timeout {self.boot_timeout:g} s" if self.time_scale != 1 else ""
            self.progress(f"booting {len(self.machines)} node(s) of fleet {self.spec.name} ({self.accel}{slow})")
            start_all(*self.machines.values())
        except BaseException:
            self.close()
            raise
        self.progress(f"fleet {self.spec.name} up in {time.monotonic() - started:.1f} s")

    def _start_scripts(self) -> dict[str, Path]:
        return self.image.start_scripts(self.spec, self.state_dir, self.progress)

    def snapshot(self, name: str) -> None:
        """Snapshot every machine at one moment: all paused, saved in parallel, resumed
        together. A machine QEMU cannot snapshot (docs/nixos-facts.md: a 9p share, or a
        writable raw drive) falls back, for the pristine snapshot only, to a cold boot from a
        fresh disk in reset(); the fleet says so once, with QEMU's reason."""
        targets = []
        for machine in self.machines.values():
            if machine.name not in self.cold_boot:
                targets.append(machine)
            elif name != PRISTINE:
                raise MachineError(machine.name, f"cannot snapshot: {self.cold_boot[machine.name]}")
        with together.paused(targets):
            failures = together.each(targets, lambda machine: machine.snapshot(name))
        refused = {}
        for machine in targets:
            exc = failures.get(machine.name)
            if exc is None:
                continue
            if not isinstance(exc, QMPError):
                raise exc
            if name == PRISTINE and SNAPSHOTS_RULED_OUT.search(str(exc)):
                refused[machine.name] = _first_line(exc)
            else:
                raise exc
        if refused:
            self.cold_boot.update(refused)
            self.progress(
                f"fleet {self.spec.name}: QEMU cannot snapshot {', '.join(sorted(refused))} "
                f"({'; '.join(sorted(set(refused.values())))}); "
                "they cold-boot from a fresh disk before each test instead (slower)"
            )

    def restore(self, name: str) -> None:
        """Back to snapshot `name`: machines that cannot snapshot cold-boot first (pristine
        only), then the others are loaded at one moment and resumed together."""
        cold = [m for m in self.machines.values() if m.name in self.cold_boot]
        if cold and name != PRISTINE:
            raise MachineError(cold[0].name, f"cannot restore {name!r}: {self.cold_boot[cold[0].name]}")
        self._cold_boot(cold)
        self._restore_together(name, [m for m in self.machines.values() if m.name not in self.cold_boot])

    def reset(self) -> None:
        """Back to the state right after boot: restore the pristine snapshot, restarting any
        machine a test stopped (its disk keeps the snapshot); machines without snapshots boot
        again from a fresh disk."""
        self._cold_boot([m for m in self.machines.values() if m.name in self.cold_boot])
        restorable = [m for m in self.machines.values() if m.name not in self.cold_boot]
        stopped = [m for m in restorable if not m.booted]
        if stopped:
            start_all(*stopped)
        self._restore_together(PRISTINE, restorable)

    def _restore_together(self, name: str, machines: list[Machine]) -> None:
        """All paused, `loadvm` in parallel (each stays paused), all resumed: the VLAN sees
        one consistent moment. Then every shell answers (in parallel)."""
        with together.paused(machines):
            together.raise_first(together.each(machines, lambda machine: machine.load_snapshot(name)), machines)
        together.raise_first(together.each(machines, lambda machine: machine.await_restored(name)), machines)

    def _cold_boot(self, machines: list[Machine]) -> None:
        """Stop, delete the per-boot state the start script recreates, boot (in parallel)."""
        if not machines:
            return
        for machine in machines:
            machine.crash()
            for pattern in (machine.disk_image.name, *FRESH_BOOT_FILES):
                for path in machine.state_dir.glob(pattern):
                    path.unlink()
        start_all(*machines)

    def checkpoint(self, name: str, setup):
        """The value of checkpoint `name`: `setup(directory)` runs on the first use, later
        uses restore the fleet's snapshot of its state (harness/checkpoints.py)."""
        return checkpoints.reach(self, name, setup)

    def note(self, text: str) -> None:
        for machine in self.machines.values():
            machine.note(text)

    def close(self) -> None:
        """Kill every machine and switch (teardown: no clean shutdown needed, disks are scratch)."""
        errors: list[Exception] = []
        try:
            for machine in self.machines.values():
                try:
                    machine.close()
                except Exception as exc:  # one stuck machine must not keep the others running
                    errors.append(exc)
        finally:
            for switch in self.switches.values():
                try:
                    switch.stop()
                except Exception as exc:
                    errors.append(exc)
            if not self.keep:
                shutil.rmtree(self.state_dir, ignore_errors=True)
        if errors:
            raise errors[0]

    def pids(self) -> list[int]:
        pids = [m.pid for m in self.machines.values() if m.pid]
        pids += [s.pid for s in self.switches.values() if s.pid]
        return pids

