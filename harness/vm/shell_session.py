"""A root shell on a node over the backdoor, for a person: `deploy-harness shell NODE`, and
`machine.shell_interact()` from inside a test.

The backdoor is a bash with no prompt and no echo, reading the virtio console; its commands'
stderr goes to the serial console. Typing into it raw would show nothing until output comes
back. So the editing happens here, with readline (history, line editing, pasting several lines
at once), and each line runs as one backdoor command: stderr merged into stdout, the output
printed when the command ends, a non-zero exit status shown, the working directory carried
over to the next line (variables are not: each line is a fresh subshell). Lines run as a person's
shell runs them, without the driver's `set -euo pipefail`. Ctrl-] or Ctrl-D
detaches; the VM keeps running.

The backdoor cannot interrupt a guest command (its console is raw: no signals). Ctrl-C while a
command runs says so and keeps waiting; a second Ctrl-C detaches and leaves the command
running (the next attach waits for it to finish).
"""
from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path
from typing import BinaryIO, Iterable, Protocol, TextIO

from .backdoor import BackdoorShellExited
from .errors import MachineError
from .guest import DEFAULT_TIMEOUT

DETACH_KEY = "\x1d"  # Ctrl-]
_CWD_MARK = b"\x1fndh-cwd:"


class Detached(Exception):
    pass


def wrap(line: str, cwd: str) -> str:
    """The backdoor command for one typed line: start in `cwd`, stderr into stdout, and print
    the directory the line ended in after a marker byte (the output ends with it)."""
    return (
        f"set +euo pipefail; cd -- {shlex.quote(cwd)} 2>/dev/null\nexec 2>&1\n{line}\n"
        "__ndh_status=$?; printf '\\037ndh-cwd:%s' \"$PWD\"; exit $__ndh_status"
    )


def split_cwd(output: bytes) -> tuple[bytes, str | None]:
    """(the line's own output, the directory it ended in, or None if it exited early)."""
    head, mark, tail = output.rpartition(_CWD_MARK)
    if not mark or b"\n" in tail:
        return output, None
    return head, tail.decode("utf-8", "surrogateescape")


class BackdoorMachine(Protocol):
    """What the shell needs of a machine (a Machine is one; this module does not import it, so
    Machine can offer `shell_interact` without an import circle)."""

    name: str

    @property
    def booted(self) -> bool: ...

    def succeed(self, *commands: str, timeout: float | None = None) -> str: ...

    def execute_bytes(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes]: ...


class BackdoorShell:
    def __init__(
        self,
        machine: BackdoorMachine,
        fleet: str,
        attach_command: str,
        out: BinaryIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.machine = machine
        self.fleet = fleet
        self.attach_command = attach_command
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr
        self.cwd = machine.succeed("pwd").strip() or "/"

    # -- the two ways in ------------------------------------------------------------------

    def interactive(self, history: Path | None = None) -> int:
        """Prompt, run, print; until Ctrl-] / Ctrl-D / `exit`. Returns 0 on detach."""
        readline = _set_up_readline(history)
        name = self.machine.name
        self._say(
            f"Root shell on {name} (fleet {self.fleet}) over the NixOS test backdoor.\n"
            "Each line runs as one command; its output (stdout and stderr) shows when it ends.\n"
            "`cd` carries over to the next line, variables do not. There is no terminal:\n"
            "full-screen programs (vi, less, top) do not work; `top -b -n 1` does.\n"
            f"Ctrl-] or Ctrl-D detaches; {name} keeps running."
        )
        try:
            while True:
                try:
                    line = input(f"{name}:{self.cwd}# ")
                except EOFError:
                    self._say("")
                    raise Detached() from None
                except KeyboardInterrupt:
                    self._say("^C")
                    continue
                if DETACH_KEY in line or line.strip() in ("exit", "logout"):
                    raise Detached()
                if line.strip():
                    self.run_line(line)
        except Detached:
            self._say(f"detached from {name}; it keeps running. Attach again with: {self.attach_command}")
            return 0
        finally:
            if readline is not None and history is not None:
                try:
                    readline.write_history_file(str(history))
                except OSError:
                    pass

    def script(self, lines: Iterable[str]) -> int:
        """Run lines read from a pipe or file, no prompt; returns the last line's status."""
        status = 0
        try:
            for line in lines:
                line = line.rstrip("\n")
                if line.strip():
                    status = self.run_line(line)
        except Detached:
            return 130
        return status

    # -- one line -------------------------------------------------------------------------

    def run_line(self, line: str) -> int:
        try:
            status, output = self._execute_waiting(wrap(line, self.cwd))
        except MachineError as exc:
            # The guest rebooted under the command: usable again. A shell that ended is not.
            if self.machine.booted and not isinstance(exc.__cause__, BackdoorShellExited):
                self._say(str(exc))
                self.cwd = self.machine.succeed("pwd").strip() or "/"
                return 1
            raise
        output, cwd = split_cwd(output)
        if cwd:
            self.cwd = cwd
        self.out.write(output)
        if output and not output.endswith(b"\n"):
            self.out.write(b"\n")
        self.out.flush()
        if status != 0:
            self._say(f"[exit status {status}]")
        return status

    def _execute_waiting(self, command: str) -> tuple[int, bytes]:
        """Run in a thread, so that Ctrl-C here can explain instead of tearing the session."""
        result: dict = {}
        # An Event, not Thread.join: a join interrupted by Ctrl-C can leave is_alive() wrong.
        done = threading.Event()

        def work() -> None:
            try:
                result["value"] = self.machine.execute_bytes(command, timeout=None)
            except BaseException as exc:  # handed to the main thread
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="backdoor-command", daemon=True).start()
        warned = False
        while not done.is_set():
            try:
                done.wait(0.2)
            except KeyboardInterrupt:
                if warned:
                    self._say("detaching; the command goes on running in the guest.")
                    raise Detached() from None
                warned = True
                self._say(
                    "the backdoor cannot interrupt a command in the guest; waiting for it "
                    "to end. Ctrl-C again detaches (the command goes on running)."
                )
        if "error" in result:
            raise result["error"]
        return result["value"]

    def _say(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


def _set_up_readline(history: Path | None):
    try:
        import readline
    except ImportError:  # no line editing: Ctrl-] then Enter still detaches
        return None
    if "libedit" not in (readline.__doc__ or ""):
        # GNU readline: Ctrl-] empties the line and sends end-of-input, which detaches.
        readline.parse_and_bind(r'"\C-]": "\C-e\C-u\C-d"')
    if history is not None:
        try:
            readline.read_history_file(str(history))
        except OSError:
            pass
    readline.set_history_length(1000)
    return readline
