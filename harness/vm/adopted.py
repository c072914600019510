"""A QEMU this process did not start: one an earlier process left running for the user (keep
mode) and a later process drives again. Offers the part of subprocess.Popen that Machine and
process.py use (pid, poll, wait, returncode), and identifies the process by pid *and* start
time, so that a pid reused by an unrelated process never counts as the machine."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil


class UnknownStatus(int):
    """The exit status of a process that is not our child: the kernel gives it to its parent
    only. Reads as "unknown" in messages."""

    def __new__(cls) -> "UnknownStatus":
        return super().__new__(cls, -1)

    def __str__(self) -> str:
        return "unknown"

    __repr__ = __str__


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None if no
    such process runs. A zombie (exited, not yet reaped by its parent) does not run. Exact and
    fixed, unlike psutil's create_time() (wall-clock seconds, which move with the clock)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])  # fields[0] is field 3


def is_running(pid: int | None, started: int | None) -> bool:
    """True if the process `pid` that started at `started` still runs."""
    return pid is not None and started is not None and start_time(pid) == started


class AdoptedProcess:
    def __init__(self, pid: int, started: int) -> None:
        self.pid = pid
        self.started = started
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not is_running(self.pid, self.started):
            self.returncode = UnknownStatus()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


def terminate(targets: Iterable[tuple[int, int]], grace: float = 5.0) -> list[int]:
    """End each (pid, start time) that still runs: SIGTERM, then SIGKILL after `grace`. A pid
    whose start time no longer matches belongs to another process now and gets no signal.
    Returns the pids that survived both."""
    targets = set(targets)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in targets:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)  # psutil re-checks its identity when it signals
                if start_time(pid) == started:  # read after the handle: the same process
                    proc.send_signal(sig)
        deadline = time.monotonic() + grace
        while any(is_running(*target) for target in targets) and time.monotonic() < deadline:
            time.sleep(0.05)
    return sorted(pid for pid, started in targets if is_running(pid, started))
