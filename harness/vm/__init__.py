"""The engine: QEMU machines over the NixOS backdoor, QMP, VLANs. Knows nothing of NixOS."""
from .errors import (
    CommandFailed,
    CommandTimeout,
    MachineBroken,
    MachineDied,
    MachineError,
    MachineStartError,
    QMPError,
    WaitTimeout,
)
from . import keys
from .guest import GuestShell
from .machine import Machine, start_all
from .qemu_options import PortForward
from .vlan import VdeSwitch

__all__ = [
    "CommandFailed",
    "CommandTimeout",
    "GuestShell",
    "Machine",
    "MachineBroken",
    "MachineDied",
    "MachineError",
    "MachineStartError",
    "PortForward",
    "QMPError",
    "VdeSwitch",
    "WaitTimeout",
    "keys",
    "start_all",
]
