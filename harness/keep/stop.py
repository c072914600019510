"""Stopping a kept fleet: every process of it ends and its directory goes."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import psutil

from ..vm.adopted import start_time, terminate
from .errors import FleetStateError
from .records import read

_START_SCRIPT = re.compile(r"/run-[^/]+-vm$")


def leftover_processes(directory: Path) -> list[tuple[int, int]]:
    """(pid, start time) of this user's QEMU, vde_switch and start-script processes whose
    command line names a path in `directory`: those of the fleet, also of an interrupted boot
    that no state file lists."""
    inside = str(directory).rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        argv = proc.info["cmdline"] or []  # None: the process went, or is not ours to read
        if proc.pid == os.getpid() or not any(inside in arg for arg in argv):
            continue
        program = os.path.basename(argv[0])
        start_script = any(arg.startswith(inside) and _START_SCRIPT.search(arg) for arg in argv)
        started = start_time(proc.pid)
        ours = proc.info["uids"] is not None and proc.info["uids"].real == os.getuid()
        if (program.startswith("qemu") or program == "vde_switch" or start_script) and started is not None and ours:
            found.append((proc.pid, started))
    return found


def stop_fleet(directory: Path) -> list[int]:
    """End every process of the fleet in `directory` (SIGTERM, then SIGKILL) and remove the
    directory. Returns the pids that were ended. The pids in its state file are not trusted:
    a process is the fleet's if its command line names the directory (and it is checked by
    pid and start time up to the signal)."""
    read(directory)  # refuses a directory that is not private (and so not surely ours)
    targets = leftover_processes(directory)
    survivors = terminate(targets)
    if survivors:
        raise FleetStateError(f"could not stop pids {survivors} of fleet {directory.name}; its state stays in {directory}")
    shutil.rmtree(directory, ignore_errors=True)
    return sorted(pid for pid, _ in targets)
