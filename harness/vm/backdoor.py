"""The host side of the NixOS test backdoor: a root bash reading commands from the virtio
console with no prompt and no echo, its stdout on the same console (stderr goes to the serial
console). See nixpkgs nixos/modules/testing/test-instrumentation.nix for the guest side.

Framing, one round trip per command: at connect we define one shell function that prints a
trailer `\\x1e<token>:<counter>:<status>\\n`; each command is sent as one line ending in a call
to it. Output is every byte before the trailer (raw tty, so byte-exact). The token is random per
machine (the same across reconnects, because snapshots restore the guest's function with it)
and the counter rises per command, so neither stale output of an earlier command nor a
command's own output can be mistaken for the trailer. A later connection to a shell that is
already set up (a reattachable console, `resume`) defines the same function again and counts
from a fresh random number, so trailers of an earlier connection's commands never match.

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

Commands run with the NixOS test driver's `set -euo pipefail`, in a subshell (so `cd`, `exit`
or variables never leak into the backdoor shell). Unlike the driver's, stdin is /dev/null (a
command reading stdin would swallow the next command) and stdout is not base64-encoded: it goes through a pipe to `cat`, which writes it to the
console in large chunks. A program writing many short lines straight to the virtio console
costs the guest an interrupt per line and can lose the machine (the kernel disables the IRQ).
stderr goes to a file per command, `STDERR_FILE`, so a failure can show that command's own
stderr; the trailer function copies it to the serial console afterwards, where the driver's
users look for it. Forking the subshell costs ~5 ms under TCG, so commands that provably cannot
change shell state, print much or depend on shell options (one read-only builtin with plain or
single-quoted words: `true`, `test -e '/x'`, `[ -f /x ]`, `echo ok`) run directly in the backdoor
shell: the polling commands that dominate VM tests cost no fork.

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

from . import shell_watcher
from .console_reader import ConsoleReader, ReaderSpawn

READY_LINE = b"Spawning backdoor root shell...\n"
STDERR_FILE = "/run/.ndh-stderr"
# How much of a failed command's stderr an error shows (its end: where the reason usually is).
STDERR_SHOWN = 8192

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


def ansi_c_quote(text: str) -> str:
    """Quote as a bash $'...' string: any bytes survive, no expansion happens."""
    out = ["$'"]
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("\\'")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    out.append("'")
    return "".join(out)


class BackdoorEOF(Exception):
    """The console connection closed: QEMU exited."""


class BackdoorRebooted(Exception):
    """A fresh ready line arrived while waiting for a command: the guest rebooted."""


class BackdoorTimeout(Exception):
    pass


class BackdoorShellExited(Exception):
    """The backdoor shell said it is exiting: no command will be answered until the guest
    boots a new one (a reboot) or a snapshot is restored."""

    def __init__(self, status: int, earlier: bool = False) -> None:
        super().__init__(f"the backdoor shell exited with status {status}{_signal_meaning(status)}")
        self.status = status
        self.earlier = earlier  # before this command: no rebooted guest's shell came meanwhile


def _stderr_mark(token: str, number: int) -> str:
    """The line between a testinfra command's stdout and its stderr, as printf prints it:
    token and command number, as the trailer has them."""
    return f"\x1e{token}:{number}:stderr\n"


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

    @property
    def out_of_step(self) -> bool:
        return self._pending is not None

    def wait_ready(self, timeout: float) -> None:
        """Wait for the ready line, then define the trailer function."""
        self._expect([re.compile(re.escape(READY_LINE))], timeout, watch_reboot=False)
        self.setup(timeout)

    def setup(self, timeout: float) -> None:
        """Prepare a fresh backdoor shell whose ready line has already been read (at boot, or
        when a reboot was noticed mid-command): count from 0, define the trailer function."""
        self._pending = None
        self.gone = None
        self._counter = 0
        self._define_trailer(timeout)

    def resume(self, timeout: float) -> None:
        """Take over a shell an earlier connection set up (its ready line is long gone): drop
        stale bytes, define the trailer function again (identical, same token; also right if
        the guest rebooted meanwhile) and count from a fresh random number. If the shell is
        still busy with an earlier connection's command, this times out and the backdoor stays
        out of step until that command ends."""
        self.discard_pending_output()
        self._counter = secrets.randbelow(1 << 48)
        try:
            self._define_trailer(timeout)
        except BackdoorTimeout:
            self._pending = self._counter
            raise
        except BackdoorRebooted:
            # The guest rebooted meanwhile and printed its ready line (already read).
            self.setup(timeout)

    def _mark_serial(self) -> None:
        """From here on a watcher's line on the serial log is news (earlier ones belong to
        shells a restore or a reboot replaced)."""
        if self._watcher is not None:
            self._watcher.mark()

    def _define_trailer(self, timeout: float) -> None:
        self._mark_serial()
        self._send(
            # __ndh_t NUMBER STATUS [copy]: with `copy`, the command's stderr file goes to the
            # serial console first.
            f"__ndh_t(){{ [ -n \"${{3-}}\" ] && [ -s {STDERR_FILE} ] && cat {STDERR_FILE} >&2; "
            f"printf '\\036{self._token}:%s:%d\\n' \"$1\" \"$2\"; }}; "
            # The EXIT trap ends the watcher (shell_watcher.py) first: one goodbye per shell.
            # Only in the shell itself: a child it forked runs the trap too when a signal (the
            # console's hangup) comes before it has exec'd its program.
            f"trap '__ndh_x=$?; [ \"$BASHPID\" != \"$$\" ] || {{ kill ${{__ndh_w_PID-}} 2>/dev/null; "
            f"printf \"\\036{self._token}:gone:%d\\n\" $__ndh_x; }}' EXIT; "
            "trap 'exit 130' INT; trap 'exit 143' TERM; "
            f"{shell_watcher.start_line(self._token)}"
            f"__ndh_t {self._counter} 0"
        )
        self._wait_trailer(self._counter, timeout)

    def run(self, command: str, timeout: float | None) -> tuple[int, bytes]:
        """Run `command`; return (exit status, stdout bytes)."""
        if "\0" in command:
            raise ValueError(f"a command cannot contain a NUL byte (bash would cut it there): {command!r}")
        if runs_without_subshell(command):
            return self._run_line(f"{command} 2>{STDERR_FILE}", "$? copy", timeout)
        # `eval --`: a command that starts with `-` runs as written, not as eval's option.
        body = f"(set -euo pipefail; eval -- {ansi_c_quote(command)}) </dev/null 2>{STDERR_FILE} | cat"
        return self._run_line(body, "${PIPESTATUS[0]} copy", timeout)

    def run_sh(self, command: str, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run `command` as testinfra's local backend runs it (`/bin/sh -c`, none of the
        driver's options, a process of its own); return (exit status, stdout, stderr), all
        byte-exact. stdin is /dev/null, as in `run`."""
        if "\0" in command:
            raise ValueError(f"a command cannot contain a NUL byte (bash would cut it there): {command!r}")
        mark = ""

        def body(number: int) -> str:
            nonlocal mark
            mark = _stderr_mark(self._token, number)
            # The status is kept before anything else runs; the stderr file follows the mark,
            # and is sent only when it is not empty (`[ -s` is a builtin: no fork).
            return (
                f"/bin/sh -c {ansi_c_quote(command)} </dev/null 2>{STDERR_FILE} | cat; "
                f"__ndh_s=${{PIPESTATUS[0]}}; printf %s {ansi_c_quote(mark)}; "
                f"[ -s {STDERR_FILE} ] && cat {STDERR_FILE}"
            )

        status, output = self._run_line(body, "$__ndh_s copy", timeout)
        stdout, _, stderr = output.partition(mark.encode())
        return status, stdout, stderr

    def read_stderr(self, timeout: float = 30) -> bytes:
        """The end of the last command's stderr (read without a redirection of its own, which
        would truncate the file first)."""
        _, output = self._run_line(f"tail -c {STDERR_SHOWN} {STDERR_FILE} 2>/dev/null", "0", timeout)
        return output

    def _run_line(
        self, body: str | Callable[[int], str], trailer_args: str, timeout: float | None
    ) -> tuple[int, bytes]:
        """Send `body` (or `body(number)`, for a body that names its own command number)
        followed by the trailer call; return the trailer's status and the output before it."""
        if self.gone is not None:
            self._await_new_shell(timeout)
        if self._pending is not None and not self._catch_up():
            raise BackdoorTimeout("an earlier command is still running")
        self._counter += 1
        number = self._counter
        if callable(body):
            body = body(number)
        self._mark_serial()
        self._send(f"{body};__ndh_t {number} {trailer_args}")
        try:
            return self._wait_trailer(number, timeout)
        except BackdoorTimeout:
            self._pending = number
            raise

    def _await_new_shell(self, timeout: float | None) -> None:
        """After the shell exited, only a rebooting guest answers again: wait for its ready
        line (up to the command's timeout), then set the new shell up."""
        try:
            self._expect([re.compile(re.escape(READY_LINE))], timeout, watch_reboot=False)
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
            patterns = patterns + [self._gone_line, re.compile(re.escape(READY_LINE))]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                index = self._spawn.expect(patterns, timeout=step, searchwindowsize=4096)
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
        """One round trip: the shell is reading commands again."""
        self.run(":", timeout)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        except OSError:
            pass
        self._reader.join(timeout=5)

