"""The host side of the NixOS test backdoor: a root bash reading commands from the virtio
console with no prompt and no echo, its stdout on the same console (stderr goes to the serial
console). See nixpkgs nixos/modules/testing/test-instrumentation.nix for the guest side.

Framing, one round trip per command: at connect we define the shell functions of
shell_framing.py; each command is sent as one short line that ends in a trailer
`\\x1e<token>:<counter>:<status>\\n`. Output is every byte before the trailer (raw tty, so
byte-exact). The token is random per machine (the same across reconnects, because snapshots
restore the guest's functions with it) and the counter rises per command, so neither stale output
of an earlier command nor a command's own output can be mistaken for the trailer. A later
connection to a shell that is already set up (a reattachable console, `resume`) defines the same
functions again and counts from a fresh random number, so trailers of an earlier connection's
commands never match. After a restore the functions are defined again too: the snapshot may
come from another version of the harness.

When the backdoor shell itself ends (a command ran `kill $$`, or the guest shuts down), its
EXIT trap, set at connect with traps that turn INT and TERM into an exit, prints
`\\x1e<token>:gone:<status>\\n`: the host then knows at once that no trailer will come, instead
of waiting out the timeout. Bash runs such a trap when its current command ends or, idle, when
the next command arrives. So SIGHUP stays untrapped: systemd stops the NixOS backdoor service
with it at every shutdown and reboot, and a trapped HUP would hold that stop until systemd's
timeout. Bash ends at once on it and still runs the EXIT trap (with the last command's status).
Subshells reset caught traps, so commands see default signals. SIGKILL ends the shell without a
word of its own: its watcher says so on the serial console, which the host reads while it
waits (shell_watcher.py). The EXIT trap ends the watcher: one goodbye per shell (the trap acts
in the shell only, not in a child forked before its exec).

Output of forked commands goes through a relay: a FIFO read by one background `cat` that
writes to the console in large chunks. A program writing many short lines straight to the virtio
console costs the guest an interrupt per line and can lose the machine (the kernel disables the
IRQ); a `| cat` after each command fixed that too, but its fork and exec cost ~5 ms under TCG per
command. A relay that cannot start fails the connect with that reason.

Commands run with the NixOS test driver's `set -euo pipefail`, in a subshell (so `cd`, `exit`
or variables never leak into the backdoor shell). Unlike the driver's, stdin is /dev/null (a
command reading stdin would swallow the next command) and stdout is not base64-encoded. A
command left running in the background does not hold the answer back (its stdout is the relay).
stderr goes to a file, `shell_framing.STDERR_FILE`, so a failure can show that command's own stderr; it is
copied to the serial console afterwards, where the driver's users look for it. Forking the
subshell costs ~2.5 ms under TCG, so commands that provably cannot change shell state, print
much or depend on shell options (one read-only builtin with plain or single-quoted words: `true`,
`test -e '/x'`, `[ -f /x ]`, `echo ok`) run directly in the backdoor shell, their stderr straight
to the serial console as the driver's: the polling commands that dominate VM tests cost no fork.

testinfra's commands (`run_sh`) run as testinfra's own backends run theirs instead: in a
`/bin/sh -c` of their own (no driver options; `$$` is that shell, not the backdoor), and their
stderr comes back whole and byte-exact in the same round trip, after a marker line, only when
there is some. Only they pay for it: the driver's verbs read stderr only on failure.
"""
from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path
from typing import Callable

import pexpect

from . import shell_framing, shell_watcher
from .console_reader import ConsoleReader, ReaderSpawn

READY_LINE = b"Spawning backdoor root shell...\n"
_READY = re.compile(re.escape(READY_LINE))

_FAST_BUILTINS = {"true", "false", ":", "test", "[", "echo", "printf", "pwd"}
# A word of a fast command: plain characters or one single-quoted string (no expansion can
# happen inside either). Anything else (`$`, backquotes, `;`, `|`, `&`, redirections, globs,
# double quotes, backslashes, `#`, newlines) takes the subshell.
_FAST_WORD = r"(?:[A-Za-z0-9_./:=+%@,^\[\]!-]+|'[^'\n]*')"
_FAST_COMMAND = re.compile(rf"{_FAST_WORD}(?:[ \t]+{_FAST_WORD})*[ \t]*")


def runs_without_subshell(command: str) -> bool:
    """True for commands that cannot change the backdoor shell's state."""
    if not _FAST_COMMAND.fullmatch(command):
        return False
    words = command.split()
    if not words or words[0] not in _FAST_BUILTINS:
        return False
    # printf -v assigns a variable.
    return not (words[0] == "printf" and any(w.startswith("-v") for w in words[1:]))


class BackdoorEOF(Exception):
    """The console connection closed: QEMU exited."""


class BackdoorRebooted(Exception):
    """A fresh ready line arrived while waiting for a command: the guest rebooted."""


class BackdoorTimeout(Exception):
    pass


class BackdoorRelayFailed(Exception):
    """The backdoor shell could not start its output relay (its reason is on the serial console)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the backdoor shell could not start its output relay {shell_framing.RELAY_FIFO} "
                         f"(status {status}; mkfifo and cat are needed in the guest)")


class BackdoorShellExited(Exception):
    """The backdoor shell said it is exiting: no command will be answered until the guest
    boots a new one (a reboot) or a snapshot is restored."""

    def __init__(self, status: int, earlier: bool = False) -> None:
        super().__init__(f"the backdoor shell exited with status {status}{_signal_meaning(status)}")
        self.status = status
        self.earlier = earlier  # before this command: no rebooted guest's shell came meanwhile


def _refuse_nul(command: str) -> None:
    if "\0" in command:
        raise ValueError(f"a command cannot contain a NUL byte (bash would cut it there): {command!r}")


def _signal_meaning(status: int) -> str:
    names = {130: "SIGINT", 137: "SIGKILL", 143: "SIGTERM"}
    return f" ({names[status]})" if status in names else ""


class Backdoor:
    """One backdoor connection. Knows the framing; knows nothing about machines."""

    def __init__(
        self, sock: socket.socket, alive: Callable[[], bool], token: str, serial_log: Path | None = None
    ) -> None:
        self._sock = sock
        self._alive = alive
        self._reader = ConsoleReader(sock)
        self._reader.start()
        self._spawn = ReaderSpawn(self._reader)
        self._token = token
        self._counter = 0
        self._pending: int | None = None  # counter of a command that timed out
        self._trailer = re.compile(
            rb"\x1e" + self._token.encode() + rb":(\d+):(\d+)\n"
        )
        self._gone_line = re.compile(rb"\x1e" + self._token.encode() + rb":gone:(\d+)\n")
        # A shell killed without a word: its watcher says so on the serial console (shell_watcher.py).
        self._watcher = None if serial_log is None else shell_watcher.GoneOnSerial(serial_log, token)
        self._mark_serial()
        self.gone: int | None = None  # the exit status the shell reported, until a new one is set up
        self._stderr_captured = False  # whether STDERR_FILE holds the last command's stderr

    @property
    def out_of_step(self) -> bool:
        return self._pending is not None

    def wait_ready(self, timeout: float) -> None:
        """Wait for the ready line, then define the framing."""
        self._expect([_READY], timeout, watch_reboot=False)
        self.setup(timeout)

    def setup(self, timeout: float) -> None:
        """Prepare a fresh backdoor shell whose ready line has already been read (at boot, or
        when a reboot was noticed mid-command): count from 0, define the framing."""
        self._pending = None
        self.gone = None
        self._counter = -1
        self.sync(timeout)

    def resume(self, timeout: float) -> None:
        """Take over a shell an earlier connection set up (its ready line is long gone): drop
        stale bytes, define the framing again (identical, same token; also right if the guest
        rebooted meanwhile) and count from a fresh random number. If the shell is still busy
        with an earlier connection's command, this times out and the backdoor stays out of step
        until that command ends."""
        self.discard_pending_output()
        self._counter = secrets.randbelow(1 << 48)
        try:
            self.sync(timeout)
        except BackdoorRebooted:
            # The guest rebooted meanwhile and printed its ready line (already read).
            self.setup(timeout)

    def _mark_serial(self) -> None:
        """From here on a watcher's line on the serial log is news (earlier ones belong to
        shells a restore or a reboot replaced)."""
        if self._watcher is not None:
            self._watcher.mark()

    def run(self, command: str, timeout: float | None) -> tuple[int, bytes]:
        """Run `command`; return (exit status, stdout bytes)."""
        _refuse_nul(command)
        if runs_without_subshell(command):
            return self._run_line(lambda number: shell_framing.fast(command, number), timeout, stderr_captured=False)
        return self._run_line(lambda number: shell_framing.forked(command, number), timeout)

    def run_sh(self, command: str, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run `command` as testinfra's local backend runs it (`/bin/sh -c`, none of the
        driver's options, a process of its own); return (exit status, stdout, stderr), all
        byte-exact. stdin is /dev/null, as in `run`. stderr follows a marker line, and only
        when there is some."""
        _refuse_nul(command)
        numbers = []

        def line(number: int) -> str:
            numbers.append(number)
            return shell_framing.testinfra(command, number)

        status, output = self._run_line(line, timeout)
        stdout, _, stderr = output.partition(shell_framing.stderr_mark(self._token, numbers[-1]))
        return status, stdout, stderr

    def read_stderr(self, timeout: float = 30) -> bytes:
        """The end of the last command's stderr; empty after a command whose stderr went
        straight to the serial console."""
        if not self._stderr_captured:
            return b""
        return self._run_line(shell_framing.stderr_tail, timeout)[1]

    def _run_line(self, line: Callable[[int], str], timeout: float | None,
                  stderr_captured: bool = True) -> tuple[int, bytes]:
        """Send `line(number)`, shell code that ends in command `number`'s trailer; return the
        trailer's status and the output before it."""
        if self.gone is not None:
            self._await_new_shell(timeout)
        if self._pending is not None and not self._catch_up():
            raise BackdoorTimeout("an earlier command is still running")
        self._counter += 1
        number = self._counter
        self._mark_serial()
        self._send(line(number))
        self._stderr_captured = stderr_captured
        try:
            return self._wait_trailer(number, timeout)
        except BackdoorTimeout:
            self._pending = number
            raise

    def _await_new_shell(self, timeout: float | None) -> None:
        """After the shell exited, only a rebooting guest answers again: wait for its ready
        line (up to the command's timeout), then set the new shell up."""
        try:
            self._expect([_READY], timeout, watch_reboot=False)
        except BackdoorTimeout:
            raise BackdoorShellExited(self.gone or 0, earlier=True) from None
        self.setup(30 if timeout is None else timeout)

    def _catch_up(self) -> bool:
        """If the timed-out command has finished meanwhile, consume its trailer."""
        assert self._pending is not None
        self._spawn.pull()
        try:
            self._wait_trailer(self._pending, timeout=0)
        except BackdoorTimeout:
            return False
        self._pending = None
        return True

    def _wait_trailer(self, number: int, timeout: float | None) -> tuple[int, bytes]:
        chunks = []
        while True:
            match, before = self._expect([self._trailer], timeout, watch_reboot=True)
            chunks.append(before)
            if int(match.group(1)) == number:
                return int(match.group(2)), b"".join(chunks)
            # A trailer of an older command (timed out, then finished): not our output.
            chunks.clear()

    def _expect(self, patterns, timeout: float | None, watch_reboot: bool):
        """Wait for the first pattern; returns (match, bytes before it). Checks QEMU is alive
        while waiting so that a dead guest gives an error, not a hang."""
        if watch_reboot:
            patterns = patterns + [self._gone_line, _READY]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                # expect_list: the patterns are compiled already (expect() compiles them again).
                index = self._spawn.expect_list(patterns, timeout=step, searchwindowsize=4096)
            except pexpect.EOF as exc:
                raise BackdoorEOF("the console connection closed") from exc
            except pexpect.TIMEOUT:
                if not self._alive():
                    raise BackdoorEOF("QEMU exited") from None
                if watch_reboot and self._watcher is not None and self._watcher.seen():
                    self._pending = None  # nothing will answer it
                    self.gone = 137
                    raise BackdoorShellExited(self.gone) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise BackdoorTimeout(f"no answer within {timeout} s") from None
                continue
            before = self._spawn.before
            if watch_reboot and index == len(patterns) - 1:
                raise BackdoorRebooted("the guest printed a new ready line")
            if watch_reboot and index == len(patterns) - 2:
                self._pending = None  # nothing will answer it
                self.gone = int(self._spawn.match.group(1))
                raise BackdoorShellExited(self.gone)
            return self._spawn.match, before

    def _send(self, line: str) -> None:
        data = line.encode("utf-8", "surrogateescape") + b"\n"
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise BackdoorEOF(f"cannot write to the console: {exc}") from exc

    def send_raw(self, text: str) -> None:
        """Send bytes as typed (used for `poweroff`, which ends the shell mid-command)."""
        self._send(text)

    def discard_pending_output(self) -> None:
        """Drop whatever the guest printed that nobody asked for (after a restore)."""
        self._mark_serial()
        self._spawn.buffer = b""
        self._spawn.before = b""
        self._reader.discard()
        self._pending = None
        self.gone = None  # a restored guest has the snapshot's shell

    def sync(self, timeout: float) -> None:
        """One round trip: the shell is reading commands again, with this version's functions
        (a restored snapshot may hold another version's)."""
        status, _ = self._run_line(lambda number: shell_framing.setup(self._token, number), timeout,
                                   stderr_captured=False)
        if status != 0:
            raise BackdoorRelayFailed(status)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # the reader thread reads the end and returns
        except OSError:
            pass
        self._reader.join(timeout=5)
        self._reader.close()
        self._sock.close()  # after the reader: a closed socket's fd is -1, which select refuses

