"""Kept fleets: fleets left running for the user (`deploy-harness up`, `pytest --keep-vms`) and
found again by later processes. paths.py: where they live; records.py: a fleet's state file
(what a later process needs to drive it: each node's QEMU pid and start time, so that a reused
pid never passes for it, start script, state directory, backdoor token, VLANs, port forwards;
each VLAN switch's pid); claims.py: a new fleet's directory and record; locks.py: one driver per
node; attach.py: driving a node of a kept fleet; reuse.py: a test run driving a kept fleet
(`pytest --reuse-fleet`); whole.py: every node of one driven by one command (`deploy-harness
restore --all`); stop.py: ending a fleet.
"""
from .attach import KeptFleet, attached, how_to_attach
from .claims import claim, claim_free
from .errors import FleetStateError, NoFleet, NodeBusy
from .paths import check_name, dir_name_for, env_prefix, fleets_root
from .records import FleetRecord, all_fleets, find, survey
from .reuse import ReusedFleet, differences, matching, why_not_matching
from .stop import leftover_processes, stop_fleet

__all__ = [
    "FleetRecord", "FleetStateError", "KeptFleet", "NoFleet", "NodeBusy", "ReusedFleet",
    "all_fleets", "attached", "check_name", "claim", "claim_free", "differences", "dir_name_for",
    "env_prefix", "find", "fleets_root", "how_to_attach", "leftover_processes", "matching",
    "stop_fleet", "survey", "why_not_matching",
]
