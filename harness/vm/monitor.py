"""QEMU monitor verbs, mixed into Machine: monitor commands, keys, and whole-VM snapshots."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from . import keys
from .backdoor import BackdoorEOF, BackdoorRebooted, BackdoorRelayFailed, BackdoorShellExited, BackdoorTimeout
from .errors import MachineBroken, MachineDied, MachineError, QMPError
from .qmp import QMPCommandError, QMPConnectionError


# savevm's words when writing the state into the qcow2 disk failed (ENOSPC -28, EIO -5).
WRITE_FAILED = re.compile(r"failed to save SaveStateEntry|No space left|Input/output error|: -(?:5|28)\b")


class MonitorVerbs:
    def send_monitor_command(self, command: str) -> str:
        return self._qmp("human-monitor-command", {"command-line": command})

    def send_key(self, key: str, delay: float | None = 0.01) -> None:
        """Press keys together, in QEMU's names ("ctrl-alt-delete"), or type one character."""
        self._qmp("send-key", {"keys": [{"type": "qcode", "data": part} for part in keys.qcodes(key)]})
        if delay is not None:
            time.sleep(delay)

    def send_chars(self, chars: str, delay: float | None = 0.01) -> None:
        """Type `chars` on the virtual keyboard: `send_chars("root\\n")`."""
        for char in chars:
            self.send_key(char, delay)

    def _qmp(self, command: str, arguments: dict, timeout: float = 600):
        """A QMP command; its failures as errors that name this machine. The timeout is scaled
        by the machine's time scale (slow guests)."""
        self._require_up()
        timeout *= self.time_scale
        if self.qmp is None:
            raise MachineError(self.name, "has no QMP connection (detached): attach it first")
        try:
            return self.qmp.execute(command, arguments, timeout)
        except QMPCommandError as exc:
            raise QMPError(self.name, f"QEMU refused {command}: {exc}") from exc
        except QMPConnectionError as exc:
            status = self._stop_process() if not self._alive() else None
            raise MachineDied(
                self.name, f"QMP {command} failed ({exc}); QEMU status {status}",
                self.evidence_tail(),
            ) from exc

    def snapshot(self, name: str) -> None:
        """Save the whole VM (memory, devices, disk) as `name` in its qcow2 disk."""
        self._require_up()
        self._hmp_snapshot(f"savevm {name}", "snapshot")
        self._transcript.note(f"snapshot {name}")

    def pause(self) -> None:
        """Stop the guest's CPUs (QMP `stop`); snapshots taken or loaded meanwhile leave it
        stopped, so a fleet can be saved or restored at one moment (harness.fleet)."""
        self._qmp("stop", {})

    def resume(self) -> None:
        """Let a paused guest run again (QMP `cont`)."""
        self._qmp("cont", {})

    def restore(self, name: str) -> None:
        """Go back to snapshot `name` and check the shell answers; heals an out-of-step backdoor."""
        self.load_snapshot(name)
        self.await_restored(name)

    def load_snapshot(self, name: str) -> None:
        """Load snapshot `name` (QEMU's `loadvm`), without waiting for the shell. A paused
        machine stays paused; `await_restored` once it runs."""
        self._require_up()
        assert self._backdoor is not None
        self._backdoor.discard_pending_output()
        self._hmp_snapshot(f"loadvm {name}", "restore")
        self._backdoor.discard_pending_output()
        self._serial_offset = self._evidence_from = self._serial_size()  # what the console said before is history
        self._transcript.note(f"restored {name}")

    def await_restored(self, name: str, timeout: float = 60) -> None:
        """One round trip to the restored shell: it answers, or the error says why not."""
        assert self._backdoor is not None
        try:
            self._backdoor.sync(timeout=timeout * self.time_scale)
        except BackdoorEOF as exc:
            status = self._stop_process()
            raise MachineDied(
                self.name, f"QEMU exited (status {status}) right after restoring {name}",
                self.evidence_tail(),
            ) from exc
        except BackdoorRelayFailed as exc:
            raise MachineBroken(self.name, f"after restoring {name}: {exc}", self.evidence_tail()) from exc
        except (BackdoorTimeout, BackdoorRebooted, BackdoorShellExited) as exc:
            raise MachineBroken(
                self.name, f"the backdoor did not answer after restoring {name} ({exc}); "
                "was the snapshot taken while a command ran? Reboot or restore another snapshot.",
                self.evidence_tail(),
            ) from exc

    def _hmp_snapshot(self, command: str, verb: str) -> None:
        assert self.qmp is not None
        try:
            text = self.qmp.hmp(command, timeout=600 * self.time_scale)
        except (QMPCommandError, QMPConnectionError) as exc:
            raise QMPError(self.name, f"{verb} failed: {exc}") from exc
        # HMP reports errors as text, not as a QMP error.
        if re.search(r"error|fail|not |doesn't|does not", text, re.IGNORECASE):
            if verb == "snapshot" and WRITE_FAILED.search(text):
                # HMP's lines end in \r\n: QEMU's words as one line of the message.
                qemu_says = "; ".join(line.strip() for line in text.splitlines() if line.strip())
                raise MachineError(self.name, self._write_failed(command, qemu_says))
            raise QMPError(self.name, f"{verb} `{command}` failed: {text.strip()}")

    def _write_failed(self, command: str, qemu_says: str) -> str:
        """savevm could not write into the disk: most often the state directory's filesystem
        is full. Not a QMPError (QEMU refusing snapshots for good): a fleet must not cold-boot
        for it, it must stop and say so."""
        try:
            free = f" ({shutil.disk_usage(self.state_dir).free // (1 << 20)} MiB free there now)"
        except OSError:
            free = ""
        return (
            f"snapshot `{command}` failed: {qemu_says}: QEMU could not write the snapshot into its "
            f"disk {self.disk_image} under {self.state_dir}{free}. Is that filesystem full? Free "
            "space there, or put the VMs' state on a larger disk (NDH_STATE_DIR for test runs, "
            "NDH_FLEETS_DIR for deploy-harness)."
        )


def saved_memory(image: Path) -> dict[str, int]:
    """Bytes of guest memory each snapshot in a qcow2 image holds, by name (QEMU's
    vm-state-size; 0 on a drive that only holds the disk state). Readable while QEMU runs."""
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)],
                                     capture_output=True, text=True, check=True).stdout)
    return {snapshot["name"]: snapshot["vm-state-size"] for snapshot in info.get("snapshots", [])}
