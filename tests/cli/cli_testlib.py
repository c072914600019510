"""Helpers for the deploy-harness CLI tests: run the installed console script against a
private fleets directory, and find the processes a fleet left."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.keep import leftover_processes
from harness.vm.adopted import is_running

DEPLOY_HARNESS = Path(sys.executable).parent / "deploy-harness"


def require_console_script() -> None:
    if not DEPLOY_HARNESS.exists():
        pytest.skip(f"{DEPLOY_HARNESS} is missing: install the package with `pip install -e .`")


class Cli:
    """`deploy-harness` as a user runs it, with fleets in `fleets_dir`."""

    def __init__(self, fleets_dir: Path, accel: str) -> None:
        self.fleets_dir = fleets_dir
        self.accel = accel
        self.env = dict(os.environ, NDH_FLEETS_DIR=str(fleets_dir))
        # A child of an xdist worker or of a --keep-vms run is neither.
        for inherited in ("NDH_DEBUG", "NDH_KEEP_RUN_ID", "PYTEST_XDIST_WORKER",
                          "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", "PYTEST_CURRENT_TEST"):
            self.env.pop(inherited, None)

    def __call__(self, *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(DEPLOY_HARNESS), *args],
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        # Whatever went wrong, the user sees a message, never a traceback.
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str, **kwargs) -> str:
        result = self(*args, **kwargs)
        assert result.returncode == 0, f"deploy-harness {' '.join(args)}: {result.stderr}{result.stdout}"
        return result.stdout

    def up(self, *args: str) -> str:
        return self.ok("up", "--accel", self.accel, *args, timeout=400)

    def state(self, fleet: str) -> dict:
        return json.loads((self.fleets_dir / fleet / "fleet.json").read_text())

    def recorded_processes(self, fleet: str) -> list[tuple[int, int]]:
        """(pid, start time) of every node and switch the fleet's state file lists."""
        data = self.state(fleet)
        entries = [*data["nodes"].values(), *data["switches"]]
        return [(e["pid"], e["started"]) for e in entries]

    def running_processes(self) -> set[tuple[int, int]]:
        """Every QEMU / vde_switch / start script whose command line names this fleets dir."""
        return set(leftover_processes(self.fleets_dir))


def as_from_a_terminal() -> None:
    """preexec_fn of a deploy-harness child that a test signals as a person would (Ctrl-C, a
    closed terminal): default dispositions, also when this run was started under `nohup` or
    with `&`, which leave SIGHUP or SIGINT ignored in every child (exec keeps that)."""
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


def all_gone(processes) -> bool:
    return not any(is_running(pid, started) for pid, started in processes)
