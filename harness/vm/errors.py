"""Errors of the engine. Each names the machine and says what to do; the start and death
errors carry the last lines of the serial console, where the guest says what went wrong."""
from __future__ import annotations


class MachineError(RuntimeError):
    def __init__(self, machine: str, message: str, serial_tail: str = "") -> None:
        self.machine = machine
        self.serial_tail = serial_tail
        text = f"machine {machine}: {message}"
        if serial_tail:
            text += "\n--- last serial console lines ---\n" + serial_tail
        super().__init__(text)


class MachineStartError(MachineError):
    """QEMU could not be started, exited early, or the backdoor never became ready."""


class MachineDied(MachineError):
    """QEMU exited or the guest rebooted while a command was running."""


class CommandTimeout(MachineError):
    """A command did not finish in time; the machine stays broken until it finishes, or until
    a snapshot is restored or the machine is rebooted."""


class MachineBroken(MachineError):
    """The backdoor is out of step (an earlier command is still running)."""


class CommandFailed(MachineError):
    """`succeed` saw a non-zero exit status (or `fail` a zero one)."""

    def __init__(self, machine: str, message: str, status: int, output: str) -> None:
        self.status = status
        self.output = output
        super().__init__(machine, message)


class QMPError(MachineError):
    """QEMU's monitor refused a command."""
