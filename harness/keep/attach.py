"""Driving the nodes of a kept fleet: from a later process (`attached`), and from the process
that booted it while others may attach in between (`KeptFleet`)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from ..vm import Machine
from ..vm.adopted import AdoptedProcess
from ..vm.machine import PortForward
from .claims import record_of
from .errors import FleetStateError
from .locks import NodeLock
from .paths import env_prefix
from .records import FleetRecord, NodeRecord, require_usable

if TYPE_CHECKING:
    from ..fleet import Fleet

ATTACH_TIMEOUT = 10  # seconds for a running guest's shell to answer a reattach


def how_to_attach(name: str, nodes: Iterable[str], directory: Path | None = None) -> list[str]:
    """The exact commands that reach a kept fleet (printed by up, --keep-vms and pause)."""
    env = env_prefix()
    where = f" (state in {directory})" if directory else ""
    lines = [f"fleet {name} is running{where}. Attach a root shell to a node with:"]
    lines += [f"  {env}deploy-harness shell {node} --fleet {name}" for node in sorted(nodes)]
    lines += ["Stop it and remove its state with:", f"  {env}deploy-harness down --fleet {name}"]
    return lines


def machine_for(node: NodeRecord) -> Machine:
    """A Machine handle for a running node of a kept fleet (not attached yet)."""
    machine = Machine(
        node.name, Path(node.start_script), Path(node.state_dir),
        vlans={n: Path(p) for n, p in node.vlans.items()}, allow_reboot=node.allow_reboot,
        accel=node.accel, boot_timeout=node.boot_timeout, leash=False, reattachable=True,
        backdoor_token=node.token, accel_options=node.accel_options, time_scale=node.time_scale,
        snapshot_drive=node.snapshot_drive,
    )
    machine.forwards = [PortForward(guest, host) for guest, host in node.forwards]
    return machine


def lock_and_attach(node: NodeRecord, holder: str, resync: bool) -> tuple[NodeLock, Machine]:
    """Lock a running node of a kept fleet for `holder` and attach a Machine to its QEMU; the
    caller detaches and releases. A failed attach releases the lock again."""
    lock = NodeLock(Path(node.state_dir), node.name)
    lock.acquire(holder)
    try:
        machine = machine_for(node)
        assert node.pid is not None and node.started is not None
        machine.attach(AdoptedProcess(node.pid, node.started), timeout=ATTACH_TIMEOUT, resync=resync)
    except BaseException:
        lock.release()
        raise
    return lock, machine


@contextlib.contextmanager
def attached(record: FleetRecord, node_name: str, holder: str, resync: bool = True) -> Iterator[Machine]:
    """Drive one node of a kept fleet: lock it, attach, yield its Machine; detach at the end
    (QEMU runs on)."""
    require_usable(record)
    node = record.node(node_name)
    if not node.running:
        raise FleetStateError(
            f"node {node_name} of fleet {record.name} is not running (its QEMU, pid {node.pid}, "
            f"has exited). See why with `deploy-harness logs {node_name} --fleet {record.name}`; "
            f"start the fleet afresh with `deploy-harness down --fleet {record.name}` and `up`."
        )
    lock, machine = lock_and_attach(node, holder, resync)
    try:
        yield machine
    finally:
        try:
            machine.detach()
        finally:
            lock.release()


class KeptFleet:
    """A keep-mode Fleet this process booted: writes its state file and holds its node locks
    while this process drives it; lets go of it (and takes it back) for other processes."""

    def __init__(self, fleet: "Fleet", origin: str, run_id: str | None = None) -> None:
        self.fleet = fleet
        self.origin = origin
        self.run_id = run_id
        self.last_test: str | None = None
        self.locks = {m.name: NodeLock(m.state_dir, m.name) for m in fleet}

    @property
    def name(self) -> str:
        return self.fleet.state_dir.name

    def save(self, last_test: str | None = None) -> None:
        if last_test is not None:
            self.last_test = last_test
        record_of(self.fleet, self.origin, self.run_id, self.last_test).write()

    def hold(self) -> None:
        for lock in self.locks.values():
            lock.acquire(self.origin)

    def let_go(self) -> None:
        """Save the state, detach every node and release the locks; QEMU runs on."""
        self.save()
        for machine in self.fleet:
            machine.detach()
        for lock in self.locks.values():
            lock.release()

    def take_back(self) -> None:
        """Lock and reattach every running node (after let_go)."""
        self.hold()
        for machine in self.fleet:
            if machine.booted:
                machine.attach(timeout=ATTACH_TIMEOUT)
