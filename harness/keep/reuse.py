"""A kept fleet driven by a test run (`pytest --reuse-fleet NAME`): its nodes locked and
attached for the run, restored to their pristine snapshot before each test, let go at the end.
QEMU and the VLAN switches run on; the fleet's record keeps its owner and switches, and only
learns the last test and any node a reset restarted."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..fleet import Fleet
from ..vm.adopted import start_time
from .attach import lock_and_attach
from .errors import FleetStateError
from .locks import NodeLock
from .records import FleetRecord, find, require_usable

if TYPE_CHECKING:
    from ..specs import FleetSpec


def layout_of_spec(spec: "FleetSpec") -> dict[str, tuple]:
    return {
        name: (tuple(node.vlans), node.allow_reboot, tuple(sorted(node.forward_ports)))
        for name, node in spec.nodes.items()
    }


def layout_of_record(record: FleetRecord) -> dict[str, tuple]:
    return {
        name: (tuple(node.vlans), node.allow_reboot, tuple(sorted(guest for guest, _ in node.forwards)))
        for name, node in record.nodes.items()
    }


def differences(record: FleetRecord, spec: "FleetSpec") -> list[str]:
    """How the nodes of kept fleet `record` differ from `spec`'s (empty when it can run the
    spec's tests): nodes missing or extra, and per node its VLANs, reboot policy and forwarded
    ports, each with what the spec wants."""
    have, want = layout_of_record(record), layout_of_spec(spec)
    found = []
    if set(want) - set(have):
        found.append(f"lacks node {', '.join(sorted(set(want) - set(have)))}")
    if set(have) - set(want):
        found.append(f"has nodes the spec does not: {', '.join(sorted(set(have) - set(want)))}")
    for name in sorted(set(want) & set(have)):
        for label, wanted, kept in zip(("vlans", "allow_reboot", "forward_ports"), want[name], have[name]):
            if wanted != kept:
                found.append(f"{name}: {label} {_shown(kept)} there, {_shown(wanted)} in the spec")
    return found


def why_not_matching(names: list[str], spec: "FleetSpec") -> str:
    """One line: what differs between each named kept fleet and `spec` (for a run that boots
    its own fleet instead of reusing one)."""
    parts = []
    for name in names:
        try:
            record = find(name)
        except FleetStateError as exc:
            parts.append(f"{name}: {exc}")
            continue
        parts.append(f"{name}: " + ("; ".join(differences(record, spec)) or "the same nodes"))
    return " | ".join(parts)


def _shown(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(map(str, value)) + ")"
    return str(value)


def matching(names: list[str], spec: "FleetSpec") -> FleetRecord | None:
    """The first of the named kept fleets whose nodes are the spec's (names, VLANs, reboot
    policy, forwarded ports); None if none is."""
    wanted = layout_of_spec(spec)
    for name in names:
        record = find(name)
        if layout_of_record(record) == wanted:
            return record
    return None


class ReusedFleet:
    def __init__(self, record: FleetRecord, holder: str) -> None:
        self.record = record
        self.holder = holder
        self.locks: list[NodeLock] = []

    def open(self, spec: "FleetSpec", progress: Callable[[str], None] = lambda _: None) -> Fleet:
        """Lock and attach every node; the Fleet drives them (it never stops them). `progress`
        hears what the fleet says (a checkpoint made again, and why)."""
        require_usable(self.record)
        scale = max((node.time_scale for node in self.record.nodes.values()), default=1.0)
        fleet = Fleet(spec, accel=self.record.accel or "tcg", base_dir=self.record.directory, keep=True,
                      time_scale=scale, progress=progress)
        try:
            for node in self.record.nodes.values():
                if not node.running:
                    raise FleetStateError(
                        f"node {node.name} of fleet {self.record.name} is not running (pid {node.pid}); "
                        f"start the fleet afresh with `deploy-harness down --fleet {self.record.name}` and `up`"
                    )
                # No resync: the restore before each test resynchronises, also a stuck shell.
                lock, machine = lock_and_attach(node, self.holder, resync=False)
                self.locks.append(lock)
                fleet.machines[node.name] = machine
        except BaseException:
            self._let_go(fleet)
            raise
        self.fleet = fleet
        return fleet

    def save(self, last_test: str | None) -> None:
        """Record the last test, and the new QEMU of any node a reset had to start again."""
        for machine in self.fleet:
            node = self.record.nodes[machine.name]
            if machine.pid and machine.pid != node.pid:
                node.pid, node.started = machine.pid, start_time(machine.pid)
        if last_test is not None:
            self.record.last_test = last_test
        self.record.write()

    def let_go(self) -> None:
        self._let_go(self.fleet)

    def _let_go(self, fleet: Fleet) -> None:
        for machine in fleet:
            if machine.booted:
                machine.detach()
        for lock in self.locks:
            lock.release()
        self.locks.clear()
