"""The watcher of a backdoor shell: how the host learns that the shell died without a word.

SIGKILL (`kill -9 $$`) ends the backdoor shell without running its EXIT trap, so no goodbye
comes on the console. Beside the shell, the harness starts a coproc blocked reading a pipe
that only the shell holds open (bash closes coproc fds in subshells and on exec, so no command,
nor anything a command leaves running, holds it). When the shell dies the read returns, and
the watcher writes one line to the shell's stderr, the serial console: `ndh-backdoor-gone:
<tag>`, the tag derived from the machine's backdoor token (which stays out of logs).

Not on the virtio console: the shell is the session leader with that console as its
controlling terminal, so its death hangs the console up, and writes after the hangup fail
(EIO) or, on a guest restored into a fresh QEMU, spin in the guest kernel (`soft lockup`). The
serial console is nobody's controlling terminal. The host reads the serial log (QEMU's
`-serial stdio`, a file) for that line while it waits for a command (GoneOnSerial).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

MARK = "ndh-backdoor-gone"
_READ = 1 << 20
_OVERLAP = 128  # a line cut by the end of one read is read whole by the next


def tag(token: str) -> str:
    return hashlib.sha256(f"watcher:{token}".encode()).hexdigest()[:16]


def start_line(token: str) -> str:
    """Shell code for the backdoor shell: start its watcher unless one runs (`__ndh_w_PID`
    set: also after a reconnect, and in every snapshot taken after the first connect), and
    wait until it ignores SIGHUP: the console's hangup sends that to the shell's process group,
    and systemd sends KillSignal to the rest of the service when its main process dies."""
    return (
        "[ -n \"${__ndh_w_PID-}\" ] || { coproc __ndh_w { trap '' HUP; echo; read -r _; "
        f"echo '{MARK}:{tag(token)}: the backdoor shell died without running its traps (SIGKILL?)' >&2; }}; "
        # Wait for its first line: it ignores SIGHUP from then on. A snapshot taken before that
        # (the pristine one, right after the first connect) would restore a watcher that the
        # console's hangup kills before it can say anything.
        "read -r -u \"${__ndh_w[0]}\" _; }; "
    )


class GoneOnSerial:
    """Watches a serial log for the watcher's line, from a point on (`mark`, when a command
    is sent): earlier lines belong to shells that are history (restored over, rebooted)."""

    def __init__(self, serial_log: Path, token: str) -> None:
        self.serial_log = Path(serial_log)
        self._line = re.compile(re.escape(f"{MARK}:{tag(token)}:").encode())
        self._offset = 0

    def mark(self) -> None:
        try:
            self._offset = self.serial_log.stat().st_size
        except OSError:
            self._offset = 0

    def seen(self) -> bool:
        """True once the watcher's line is in the log after the mark."""
        try:
            with open(self.serial_log, "rb") as log:
                log.seek(self._offset)
                data = log.read(_READ)
        except OSError:
            return False
        if self._line.search(data):
            return True
        self._offset += max(0, len(data) - _OVERLAP)
        return False
