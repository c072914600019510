"""The host's real bash behind the engine's guest verbs: not a mock, the same commands run as a
Machine runs them in a guest (`set -euo pipefail`, stdin from /dev/null, stdout returned,
stderr kept per command), only on the host."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import psutil

from harness.vm import CommandTimeout, GuestShell


class HostShell(GuestShell):
    """Each command runs in a session of its own, so a timeout (and `cleanup`) ends everything
    it started, background children that outlive it included. `stderr_log`, when given, also
    collects every command's stderr, as a machine's serial log does."""

    def __init__(self, name: str, stderr_log: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.stderr_log = stderr_log
        self.env = env
        self.commands: list[str] = []
        self._sessions: list[int] = []
        self._last_stderr = b""

    def execute_bytes(self, command: str, timeout: float | None = None) -> tuple[int, bytes]:
        self.commands.append(command)
        process = subprocess.Popen(
            ["/bin/bash", "-c", f"set -euo pipefail; {command}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, start_new_session=True,
        )
        self._sessions.append(process.pid)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            out, err = process.communicate()
            self._keep_stderr(err)
            # The engine's exception, so callers see what a VM would raise.
            raise CommandTimeout(self.name, f"command `{command}` did not finish within {timeout} s") from None
        self._keep_stderr(err)
        return process.returncode, out

    def _keep_stderr(self, err: bytes) -> None:
        self._last_stderr = err
        if self.stderr_log is not None:
            with open(self.stderr_log, "ab") as log:
                log.write(err)

    def last_stderr(self) -> str:
        return self._last_stderr.decode("utf-8", "replace")

    def cleanup(self) -> None:
        """End whatever the commands left running (e.g. an orphaned background child)."""
        for session in self._sessions:
            _kill_session(session)

    def __enter__(self) -> "HostShell":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def _kill_session(session: int) -> None:
    """SIGKILL every process of `session` (a session this shell started)."""
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(process.pid) == session:
                os.kill(process.pid, signal.SIGKILL)
