"""The guest half of the backdoor's framing: the shell functions defined at connect, and the
short line each command is sent as.

The backdoor shell reads its commands from the console one byte per read() (a tty does not
let bash read ahead), about 3 µs a byte under TCG: a 250-byte frame cost 0.7 ms, more than the
rest of a builtin's round trip. So the frame lives in functions defined at connect (parsed once;
a call costs next to nothing) and each command is one short call ending in its number:

  fast builtin   `true;__ndh_t 7`            trailer `\\x1e<token>:7:<status>\\n`, straight to the console
  forked         `__ndh_f $'cmd' 7`          the driver's `set -euo pipefail` in a subshell
  testinfra      `__ndh_sh $'cmd' 7`         `/bin/sh -c`, stdout, then `\\x1e<token>:7:stderr\\n` and stderr

A forked command's stdin is the shell's own, /dev/null from the first connect on: bash reads
its commands from the console it opened as its script (`bash --norc /dev/hvc0`, on an fd of its
own), never from stdin, and each redirection in a forked child costs ~0.1 ms under TCG. Its
stderr and stdout are fds the shell opened once (an open in each forked command cost ~0.4 ms),
moved, so the command holds no second copy of them: STDERR_FILE, appending, emptied before a
command only when the last one wrote to it; and the relay (backdoor.py's docstring), a FIFO
read by one background `cat` that writes to the console. The trailer of a forked command follows its output through the relay; one that cannot
be written there (the command killed the relay: SIGPIPE is caught by the shell, or ignored under
systemd) starts a new relay and goes straight to the console.

Inside `__ndh_f` the command sees no positional parameters (`set --`), as at the top level; it
does run inside a shell function, so a bare `return` ends it as `exit` would.
"""
from __future__ import annotations

from . import shell_watcher

STDERR_FILE = "/run/.ndh-stderr"
RELAY_FIFO = "/run/.ndh-relay"
# How much of a failed command's stderr an error shows (its end: where the reason usually is).
STDERR_SHOWN = 8192

_MOVED_FDS = "2>&$__ndh_e- >&$__ndh_o-"
_EMPTY_STDERR = f"[ ! -s {STDERR_FILE} ] || : >{STDERR_FILE}"


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


def setup(token: str, number: int) -> str:
    """Everything the framing needs, defined (again) in the shell, then trailer `number` with
    status 0, or the status of a relay that could not start. Safe to send to a shell that has
    it already (a reconnect, a restored snapshot of any harness version): the fds and the relay
    are made once, the functions and traps are replaced."""
    trailer = f"'\\036{token}:%s:%d\\n'"
    return (
        f"__ndh_t(){{ printf {trailer} \"$1\" \"${{2-$?}}\"; }}; "
        f"__ndh_relay(){{ [ -z \"${{__ndh_o-}}\" ] || exec {{__ndh_o}}>&-; rm -f {RELAY_FIFO}; "
        f"mkfifo -m 600 {RELAY_FIFO} && {{ cat {RELAY_FIFO} & __ndh_r=$!; exec {{__ndh_o}}>{RELAY_FIFO}; }}; }}; "
        f"__ndh_end(){{ [ ! -s {STDERR_FILE} ] || cat {STDERR_FILE} >&2; "
        f"printf {trailer} \"$1\" \"$2\" >&$__ndh_o || {{ __ndh_relay; __ndh_t \"$1\" \"$2\"; }}; }}; "
        f"__ndh_f(){{ {_EMPTY_STDERR}; (__ndh_c=$1; set -euo pipefail --; eval -- \"$__ndh_c\") {_MOVED_FDS}; "
        "__ndh_end \"$2\" $?; }; "
        f"__ndh_sh(){{ {_EMPTY_STDERR}; /bin/sh -c \"$1\" {_MOVED_FDS}; set -- \"$2\" $?; "
        f"{{ printf '\\036{token}:%s:stderr\\n' \"$1\"; [ ! -s {STDERR_FILE} ] || cat {STDERR_FILE}; }} >&$__ndh_o; "
        "__ndh_end \"$1\" \"$2\"; }; "
        # A shell set up by an older version holds /dev/null on an fd of its own: close it, or
        # every forked command would inherit it.
        "__ndh_s=0; exec </dev/null; [ -z \"${__ndh_n-}\" ] || { exec {__ndh_n}<&-; unset __ndh_n; }; "
        f"[ -n \"${{__ndh_o-}}\" ] || {{ trap : PIPE; exec {{__ndh_e}}>>{STDERR_FILE}; "
        "__ndh_relay || __ndh_s=$?; }; "
        # The EXIT trap ends the watcher (shell_watcher.py) first: one goodbye per shell. Only
        # in the shell itself: a child it forked runs the trap too when a signal (the console's
        # hangup) comes before it has exec'd its program.
        f"trap '__ndh_x=$?; [ \"$BASHPID\" != \"$$\" ] || {{ kill ${{__ndh_w_PID-}} 2>/dev/null; "
        f"printf \"\\036{token}:gone:%d\\n\" $__ndh_x; }}' EXIT; "
        "trap 'exit 130' INT; trap 'exit 143' TERM; "
        f"{shell_watcher.start_line(token)}"
        f"__ndh_t {number} $__ndh_s"
    )


def fast(command: str, number: int) -> str:
    """A builtin that cannot change the shell (backdoor.runs_without_subshell), run in the
    shell itself; its stderr goes straight to the serial console, as the driver's does."""
    return f"{command};__ndh_t {number}"


def forked(command: str, number: int) -> str:
    return f"__ndh_f {ansi_c_quote(command)} {number}"


def testinfra(command: str, number: int) -> str:
    return f"__ndh_sh {ansi_c_quote(command)} {number}"


def stderr_mark(token: str, number: int) -> bytes:
    """The line between a testinfra command's stdout and its stderr."""
    return f"\x1e{token}:{number}:stderr\n".encode()


def stderr_tail(number: int) -> str:
    """The end of the last forked command's stderr (read without a redirection of its own,
    which would truncate the file first)."""
    return f"tail -c {STDERR_SHOWN} {STDERR_FILE} 2>/dev/null;__ndh_t {number} 0"
