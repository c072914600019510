"""Keep mode, mixed into Machine: let go of a running machine and take it (back) from any
process (`--keep-vms`, `deploy-harness up`). QEMU serves the console and QMP to one client at a
time, so one process drives a reattachable machine at a time."""
from __future__ import annotations

import os
import socket

from .backdoor import Backdoor, BackdoorEOF, BackdoorTimeout
from .errors import MachineDied, MachineError
from .qmp import QMP, QMPConnectionError


class KeepMode:
    @property
    def backdoor_token(self) -> str:
        """The token of this machine's trailer function (stored to attach from elsewhere)."""
        return self._backdoor_token

    def detach(self) -> None:
        """Close the console and QMP connections and leave QEMU running, so that another
        process can attach (QEMU serves one client at a time)."""
        self._require_reattachable()
        # Forget them before closing: a command running in another thread then sees that
        # the EOF is ours (execute_bytes), not QEMU's death.
        backdoor, qmp = self._backdoor, self.qmp
        self._backdoor = None
        self.qmp = None
        for closable in (backdoor, qmp):
            if closable is not None:
                closable.close()
        self._close_console()
        if backdoor is not None:
            self._transcript.note(f"detached (pid {os.getpid()})")

    def attach(self, running=None, timeout: float = 30, resync: bool = True) -> None:
        """Drive a reattachable machine that is already running: connect to its console socket
        and QMP and resynchronise with the backdoor shell (its trailer function exists; the
        ready line is long gone). `running` is its QEMU when another process started it (a
        Popen-like object, e.g. adopted.AdoptedProcess). `resync=False` skips the round trip
        (`restore` resynchronises by itself, also when the shell is stuck in a command)."""
        self._require_reattachable()
        if running is not None:
            self.process = running
        if not self.booted:
            raise MachineError(
                self.name,
                f"is not running (its QEMU has exited); serial log: {self.serial_log}",
                self.evidence_tail(),
            )
        if self._backdoor is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.console_socket))
        except OSError as exc:
            sock.close()
            raise MachineError(self.name, f"cannot connect to its console {self.console_socket}: {exc}") from exc
        self._backdoor = Backdoor(sock, self._alive, self._backdoor_token, self.serial_log)
        try:
            self.qmp = QMP(self.state_dir / "qmp")
            self.qmp.connect(timeout=timeout, alive=self._alive)
            if resync:
                self._backdoor.resume(timeout)
        except (BackdoorEOF, BackdoorTimeout, QMPConnectionError, OSError) as exc:
            self.detach()
            if not self.booted:
                raise MachineDied(
                    self.name, f"QEMU exited while attaching ({exc})", self.evidence_tail()
                ) from exc
            raise MachineError(
                self.name,
                f"cannot attach: {exc}. QEMU serves its console and QMP to one client at a "
                "time: is another process attached? If not, a command of an earlier session is "
                "still running in the guest: wait for it, or restore a snapshot.",
            ) from exc
        self._transcript.note(f"attached (pid {os.getpid()})")

    def _require_reattachable(self) -> None:
        if not self.reattachable:
            raise MachineError(
                self.name,
                "its console belongs to the process that started it; only machines started "
                "with reattachable=True (keep mode) can be detached and attached",
            )
