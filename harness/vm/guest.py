"""The guest verbs of the NixOS test driver over one abstract transport, as the driver's
`BaseMachine` does: a subclass provides `execute_bytes` (a QEMU machine over its backdoor, or
the host's bash in the self-tests) and gets every verb below with the driver's names,
signatures and semantics. Every wait polls through `poll` and raises `WaitTimeout`."""
from __future__ import annotations

import base64
import io
import re
import shlex
import tarfile
from pathlib import Path
from typing import Protocol

from .errors import CommandFailed, WaitTimeout
from .poll import PollTimeout, poll

DEFAULT_TIMEOUT = 900  # seconds, as the NixOS test driver


class ShellMachine(Protocol):
    """The least the layers above need of a machine (the NixOS probes, the deploy runner, the
    cache helpers): `execute` runs a command as GuestShell does and returns (exit status,
    stdout); past `timeout` it raises CommandTimeout. Every GuestShell is one."""

    name: str

    def execute(self, command: str, *, timeout: float | None = ...) -> tuple[int, str]: ...


class GuestShell:
    """A machine that runs shell commands. Commands run as the driver runs them: in bash with
    `set -euo pipefail`, stdin from /dev/null, stdout returned, stderr kept for evidence.
    testinfra's commands (`execute_sh`) run as testinfra runs them instead."""

    name: str

    def execute_bytes(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
        """Run `command`; return (exit status, stdout bytes). Raises CommandTimeout (an
        engine error naming the machine) when `timeout` seconds pass."""
        raise NotImplementedError

    def execute_sh(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes, bytes]:
        """Run `command` as testinfra's own backends run theirs: in a `/bin/sh -c` of its own,
        without the driver's `set -euo pipefail`; return (exit status, stdout, stderr bytes).
        A Machine gets all three exact in one round trip; this fallback for other shells
        gets stderr only as `last_stderr` keeps it."""
        status, stdout = self.execute_bytes(f"exec /bin/sh -c {shlex.quote(command)}", timeout)
        return status, stdout, self.last_stderr().encode("utf-8", "surrogateescape")

    def last_stderr(self) -> str:
        """The stderr of the last command run (evidence for a failure); "" if unknown."""
        return ""

    def evidence_tail(self) -> str:
        """The last lines of the machine's own log (serial console), for failures."""
        return ""

    # -- commands ------------------------------------------------------------------------

    def execute(
        self, command: str, check_return: bool = True, timeout: float | None = DEFAULT_TIMEOUT
    ) -> tuple[int, str]:
        """Returns (exit status, stdout); as in the driver, status -1 when not `check_return`.
        Undecodable bytes are kept as surrogate escapes."""
        status, output = self.execute_bytes(command, timeout)
        return (status if check_return else -1), output.decode("utf-8", "surrogateescape")

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise CommandFailed on a non-zero exit. Returns joined stdout."""
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                raise self._failure(CommandFailed, f"command `{command}` failed (exit code {status})", status, out)
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise CommandFailed if one succeeds. Returns joined stdout."""
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise self._failure(CommandFailed, f"command `{command}` unexpectedly succeeded", status, out)
            output += out
        return output

    def _failure(self, kind: type[CommandFailed], message: str, status: int, output: str) -> CommandFailed:
        return kind(
            self.name, message, status, output, stderr=self.last_stderr(), serial_tail=self.evidence_tail()
        )

    # -- waits ---------------------------------------------------------------------------

    def wait_until_succeeds(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return self._wait_for_status(command, lambda status: status == 0, timeout, "succeed")

    def wait_until_fails(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return self._wait_for_status(command, lambda status: status != 0, timeout, "fail")

    def _wait_for_status(self, command: str, done, timeout: float, verb: str) -> str:
        try:
            _, output = poll(lambda: self.execute(command, timeout=timeout), lambda r: done(r[0]), timeout)
        except PollTimeout as exc:
            status, output = exc.last
            raise self._failure(
                WaitTimeout,
                f"command `{command}` did not {verb} within {timeout} s (last exit code {status})",
                status,
                output,
            ) from None
        return output

    def wait_for_file(self, filename: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_until_succeeds(f"test -e {shlex.quote(filename)}", timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a TCP connect to addr:port succeeds (bash's /dev/tcp: no nc needed)."""
        self.wait_until_succeeds(_tcp_probe(addr, port), timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_until_fails(_tcp_probe(addr, port), timeout)

    # -- systemd -------------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """`systemctl q`, or `systemctl --user q` as `user` (the driver's su form)."""
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(
                f"su -l {user} --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
            )
        return self.execute(f"systemctl {q}")

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """The unit's properties, as `systemctl show` lists them."""
        status, out = self.systemctl(f"--no-pager show {shlex.quote(unit)}", user)
        if status != 0:
            raise self._failure(
                CommandFailed, f'retrieving systemctl info for unit "{unit}" failed (exit code {status})', status, out
            )
        return dict(re.findall(r"^([^=\n]+)=(.*)$", out, re.MULTILINE))

    unit_info = get_unit_info

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a unit is active; fail at once if it failed, or is inactive with no job
        pending (as the driver does)."""

        def state() -> str:
            current = self.get_unit_info(unit, user).get("ActiveState", "")
            if current == "failed":
                raise self._failure(CommandFailed, f'unit "{unit}" reached state "failed"', 3, "")
            if current == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    raise self._failure(CommandFailed, f'unit "{unit}" is inactive and there are no pending jobs', 3, "")
            return current

        try:
            poll(state, lambda current: current == "active", timeout)
        except PollTimeout as exc:
            raise self._failure(WaitTimeout, f'unit "{unit}" not active within {timeout} s (state {exc.last})', 1, "") from None

    # -- files ---------------------------------------------------------------------------

    def copy_from_host(self, source: str | Path, target: str) -> None:
        """Copy a host file or directory to `target` in the guest, through the shell (no 9p
        share, so snapshots keep working). Suited to configuration-sized data."""
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"copy_from_host: {source} does not exist on the host")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(source, arcname="x")
        payload = base64.encodebytes(buffer.getvalue()).decode()
        quoted = shlex.quote(target)
        self.succeed(
            "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT\n"
            f"base64 -d <<'__NDH_EOF__' | tar -x -C \"$d\"\n{payload}__NDH_EOF__\n"
            f"mkdir -p \"$(dirname {quoted})\"; rm -rf {quoted}; mv \"$d/x\" {quoted}"
        )

    def copy_from_machine(self, source: str, target_dir: str | Path = "") -> Path:
        """Copy a guest file or directory into `target_dir` on the host (the driver copies
        into `$out/target_dir`; there is no `$out` here, so a relative `target_dir` is relative
        to the current directory). Returns the host path."""
        status, packed = self.execute_bytes(f"tar -C {shlex.quote(str(Path(source).parent))} -c "
                                            f"{shlex.quote(Path(source).name)} | base64")
        if status != 0:
            raise self._failure(CommandFailed, f"copy_from_machine: cannot read {source}", status, "")
        destination = Path(target_dir or ".")
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(base64.decodebytes(packed)), mode="r") as archive:
            archive.extractall(destination, filter="tar")
        return destination / Path(source).name

    @property
    def testinfra(self):
        """A testinfra Host whose commands run over this machine's shell."""
        if getattr(self, "_testinfra", None) is None:
            from .testinfra_backend import host_for

            self._testinfra = host_for(self)
        return self._testinfra


def _tcp_probe(addr: str, port: int) -> str:
    return f"exec 2>/dev/null 3<>/dev/tcp/{shlex.quote(addr)}/{int(port)}"
