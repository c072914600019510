"""Errors of the engine. Each names the machine and says what to do; errors about the guest
carry the last lines of its serial console, where the guest says what went wrong, and a failed
command carries its own stderr."""
from __future__ import annotations


class MachineError(RuntimeError):
    def __init__(self, machine: str, message: str, serial_tail: str = "", stderr: str = "") -> None:
        self.machine = machine
        self.serial_tail = serial_tail
        self.stderr = stderr
        text = f"machine {machine}: {message}"
        if stderr:
            text += "\n--- the command's stderr ---\n" + stderr.rstrip("\n")
        if serial_tail:
            text += "\n--- last serial console lines ---\n" + serial_tail
        super().__init__(text)


class MachineStartError(MachineError):
    """QEMU could not be started, exited early, or the backdoor never became ready."""


class MachineDied(MachineError):
    """QEMU exited, the guest rebooted, or the backdoor shell was lost."""


class CommandTimeout(MachineError):
    """A command did not finish in time; the machine stays out of step until it finishes, or
    until a snapshot is restored or the machine is rebooted."""


class MachineBroken(MachineError):
    """The backdoor is out of step (an earlier command is still running)."""


class CommandFailed(MachineError):
    """`succeed` saw a non-zero exit status (or `fail` a zero one)."""

    def __init__(
        self, machine: str, message: str, status: int, output: str, *, stderr: str = "", serial_tail: str = ""
    ) -> None:
        self.status = status
        self.output = output
        super().__init__(machine, message, serial_tail, stderr)


class WaitTimeout(CommandFailed):
    """A wait (`wait_until_succeeds`, `wait_for_unit`, `wait_for_console_text`, ...) ran out of
    time. Every wait raises this one type."""


class QMPError(MachineError):
    """QEMU's monitor refused a command."""
