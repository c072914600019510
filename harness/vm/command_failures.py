"""What a failed round trip to the backdoor means for the machine, mixed into Machine: the
backdoor's exceptions become the machine errors a test sees, each saying what to do next."""
from __future__ import annotations

from .backdoor import (
    Backdoor, BackdoorEOF, BackdoorRebooted, BackdoorRelayFailed, BackdoorShellExited, BackdoorTimeout,
)
from .errors import CommandTimeout, MachineBroken, MachineDied, MachineError

GO_ON = "Restore a snapshot or reboot the machine to go on."


class CommandFailures:
    def _command_failure(
        self, backdoor: Backdoor, command: str, timeout: float | None, exc: Exception, seconds: float
    ) -> MachineError:
        """The error for `exc`, raised while `command` ran (after `seconds`); notes it in the
        transcript and puts the backdoor back in step where that is possible."""
        if isinstance(exc, BackdoorShellExited) and exc.earlier:
            self._transcript.command(command, "NO BACKDOOR SHELL", b"", seconds)
            return MachineBroken(
                self.name,
                f"cannot run `{command}`: the backdoor shell exited earlier (status {exc.status}), "
                f"and no rebooted guest's shell came within {timeout} s. {GO_ON}",
                self.evidence_tail(),
            )
        if isinstance(exc, BackdoorShellExited):
            # The status goes into the transcript too: a later process reads why the node's
            # shell is gone from there (deploy-harness, when it cannot attach).
            self._transcript.command(command, f"BACKDOOR SHELL EXITED {exc.status}", b"", seconds)
            return MachineBroken(
                self.name,
                f"{exc} while running `{command}`: the command ended it (`kill $$`, `kill -9 $$`), "
                f"or the shell was signalled before (a guest shutting down or rebooting). The next "
                f"command waits for a rebooted guest's shell. {GO_ON}",
                self.evidence_tail(),
            )
        if isinstance(exc, BackdoorRelayFailed):  # setting up a rebooted guest's new shell
            self._transcript.command(command, "NO RELAY", b"", seconds)
            return MachineBroken(self.name, f"cannot run `{command}`: {exc}. {GO_ON}", self.evidence_tail())
        if isinstance(exc, BackdoorTimeout):
            self._transcript.command(command, "TIMEOUT", b"", seconds)
            if backdoor.out_of_step and "earlier" in str(exc):
                return MachineBroken(
                    self.name,
                    f"cannot run `{command}`: an earlier command that timed out is still running. {GO_ON}",
                    self.evidence_tail(),
                )
            return CommandTimeout(
                self.name,
                f"command `{command}` did not finish within {timeout} s and is most likely still "
                "running (a backdoor shell that ends says so at once, also on SIGKILL); the "
                "machine is out of step until it ends. Restore a snapshot or reboot the machine "
                "to go on at once.",
                self.evidence_tail(),
            )
        if isinstance(exc, BackdoorEOF):
            if self.reattachable and self._backdoor is not backdoor:
                # detach() closed the console under this command (another thread): QEMU runs on.
                return MachineError(self.name, f"detached while `{command}` was running; it goes on in the guest")
            self._transcript.command(command, "QEMU EXITED", b"", seconds)
            status = self._stop_process()
            return MachineDied(self.name, f"QEMU exited (status {status}) while running `{command}`", self.evidence_tail())
        assert isinstance(exc, BackdoorRebooted)
        self._transcript.command(command, "GUEST REBOOTED", b"", seconds)
        backdoor.setup(self.boot_timeout)  # its ready line was already read
        return MachineDied(
            self.name,
            f"the guest rebooted while running `{command}` (panic or reboot), or its backdoor "
            "shell was restarted",
            self.evidence_tail(),
        )

