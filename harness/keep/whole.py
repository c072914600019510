"""A whole kept fleet driven by one command (`deploy-harness restore --all NAME`): every node
locked and attached as a Fleet for the command's length, as a `--reuse-fleet` run does, then
let go; QEMU and the VLAN switches run on."""
from __future__ import annotations

import contextlib
from typing import Iterator

from ..fleet import Fleet
from ..specs import FleetSpec, NodeSpec
from .records import FleetRecord
from .reuse import ReusedFleet


def spec_of(record: FleetRecord) -> FleetSpec:
    """The spec a kept fleet's record describes (its nodes' layout; not their image or memory,
    which the record does not keep: enough to drive the running nodes, not to boot them)."""
    return FleetSpec(record.name, {
        name: NodeSpec(vlans=tuple(node.vlans), allow_reboot=node.allow_reboot,
                       forward_ports=tuple(sorted(guest for guest, _ in node.forwards)))
        for name, node in record.nodes.items()
    })


@contextlib.contextmanager
def attached_fleet(record: FleetRecord, holder: str) -> Iterator[Fleet]:
    """Every node of kept fleet `record` locked for `holder` and attached, without a resync
    (a restore resynchronises, also a shell stuck in an earlier command); let go at the end."""
    reused = ReusedFleet(record, holder)
    fleet = reused.open(spec_of(record))
    try:
        yield fleet
    finally:
        reused.let_go()
