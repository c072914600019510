"""The engine: QEMU machines over the NixOS backdoor, QMP, VLANs. Knows nothing of NixOS."""
from .errors import (
    CommandFailed,
    CommandTimeout,
    MachineBroken,
    MachineDied,
    MachineError,
    MachineStartError,
    QMPError,
)
from .machine import Machine
from .vlan import VdeSwitch

__all__ = [
    "CommandFailed",
    "CommandTimeout",
    "Machine",
    "MachineBroken",
    "MachineDied",
    "MachineError",
    "MachineStartError",
    "QMPError",
    "VdeSwitch",
]
