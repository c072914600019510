"""A run's scratch state (qcow2 overlays with their snapshots, sockets, logs) lives in a
directory `<state root>/ndh-<name>-XXXX` that names its owner: the pid and start time of the
process that made it, in `owner.json`. A run that is killed (SIGKILL, a lost xdist worker)
cannot remove its directory; the next run, or `deploy-harness down --all`, removes every such
directory whose owner is gone. Directories of live runs, of other users, and without an owner
file are never touched."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .vm.adopted import is_running, start_time

OWNER_FILE = "owner.json"
PREFIX = "ndh-"


def state_root() -> str:
    """Where fleets keep sockets, disks and logs: `$NDH_STATE_DIR`, else /tmp (short paths:
    unix socket paths must stay under 108 bytes)."""
    return os.environ.get("NDH_STATE_DIR", "/tmp")


def make(name: str, root: str | None = None) -> Path:
    """A fresh private state directory owned by this process."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name[:12]}-", dir=root or state_root()))
    owner = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def abandoned(root: str | None = None) -> list[Path]:
    """State directories under `root` whose owner process is gone."""
    found = []
    for path in Path(root or state_root()).glob(f"{PREFIX}*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            owner = json.loads((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if not is_running(owner.get("pid"), owner.get("start_time")):
            found.append(path)
    return found


def collect(root: str | None = None) -> list[Path]:
    """Remove the state directories of dead runs; returns what was removed."""
    removed = []
    for path in abandoned(root):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
