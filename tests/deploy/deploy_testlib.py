"""Test helpers for the nix / nixos / deploy / cache layer tests (imported by conftest and
tests; a unique module name so it cannot clash with other test directories' helpers).

`LocalShell` is the host's real bash behind the engine Machine's interface (execute/succeed,
stdout only, stderr elsewhere): not a mock, the same commands run, only on the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness.vm.errors import CommandFailed, CommandTimeout


class LocalShell:
    """Runs commands with `bash -c` on the host, the way Machine runs them in a guest.

    Each command gets its own session, so a timeout (and `cleanup`) can end everything it
    started, including background children that outlive it, by session id.
    """

    def __init__(self, name: str, stderr_log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.stderr_log = stderr_log
        self.env = env
        self.commands: list[str] = []
        self._sessions: list[int] = []

    def execute(self, command: str, *, timeout: float | None = None) -> tuple[int, str]:
        self.commands.append(command)
        with open(self.stderr_log, "ab") as stderr:
            process = subprocess.Popen(
                # Strict, like the NixOS test driver frames commands: `set -euo pipefail`.
                ["/bin/bash", "-c", f"set -euo pipefail; {command}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=self.env,
                start_new_session=True,
            )
            self._sessions.append(process.pid)
            try:
                out, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_session(process.pid)
                process.communicate()
                # The engine's exception, so callers see what a VM would raise.
                raise CommandTimeout(
                    self.name, f"command `{command}` did not finish within {timeout} s"
                ) from None
        return process.returncode, out.decode(errors="replace")

    def cleanup(self) -> None:
        """End whatever the commands left running (e.g. an orphaned background child)."""
        for session in self._sessions:
            _kill_session(session)

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                raise CommandFailed(
                    self.name, f"command `{command}` failed (exit code {status})", status, out
                )
            output += out
        return output


def require_nix() -> None:
    for tool in ("nix", "nix-store", "nix-env"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this host: the real-Nix tests need it")


def _kill_session(session: int) -> None:
    """SIGKILL every process whose session id is `session` (processes this shell started)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # Fields after the ")" that ends the command name: state ppid pgrp session ...
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


class StorePaths:
    """Store paths a test created; deleted at teardown once their temp roots are gone."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock_files: list[str] = []

    def add(self, *paths: str) -> None:
        self.paths.extend(paths)

    def add_lock_of(self, out_path: str) -> None:
        """A build nix refused to start leaves '<out>.lock' (an empty file) in the store."""
        self.lock_files.append(out_path + ".lock")

    def delete(self) -> None:
        for lock in self.lock_files:
            if os.path.isfile(lock) and os.path.getsize(lock) == 0:
                os.unlink(lock)
        if not self.paths:
            return
        # Referrers first: delete derivation outputs before their .drv files and inputs.
        subprocess.run(
            ["nix-store", "--delete", *reversed(self.paths)],
            capture_output=True,
            check=False,
        )
