"""A run's scratch state (qcow2 overlays with their snapshots, sockets, logs) lives in a
directory `<state root>/ndh-<name>-XXXX` that names its owner: the pid and start time of the
process that made it, in `owner.json`. A run that is killed (SIGKILL, a lost xdist worker)
cannot remove its directory; the next run, or `deploy-harness down --all`, removes every such
directory whose owner is gone. Directories of live runs, of other users, and without an owner
file are never touched.

The state root itself must pass the harness's one trust rule (harness/private_dirs.py: this
user's, no symlink, closed to others), whoever names it: a root that fails it is refused, never
written to or cleaned."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .images.cachedir import cache_root
from .private_dirs import UntrustedDirectory, make_private, problem_of, require_private
from .vm.adopted import is_running, start_time

__all__ = ["UntrustedDirectory", "abandoned", "collect", "describe_root", "make", "remove", "state_root", "trusted_root"]

OWNER_FILE = "owner.json"
PREFIX = "ndh-"
ENV = "NDH_STATE_DIR"
# QEMU's QMP and console sockets and the VDE switches' sockets live in a fleet's state
# directory, and a unix socket path has at most 107 bytes. Below the root come about 26 bytes
# (`/ndh-<name, 12>-<8 random>`) and up to about 30 more (`/<node>/shell`, `/vde1.ctl/.<pid>-<n>`).
ROOT_MAX = 50
# Disk-backed on FHS systems (unlike /tmp, a tmpfs on many hosts), short, and this user's own
# (/var/tmp itself is everybody's).
FALLBACK_ROOT = f"/var/tmp/ndh-{os.getuid()}"
WHAT = "state root"
OTHERWISE = f"set ${ENV} to a private directory of yours (it is made 0700 if missing)"


def default_root() -> tuple[str, str]:
    """The state root without $NDH_STATE_DIR, and why: under the user's cache directory (on disk:
    overlays and NixOS store images take several GB), else /var/tmp/ndh-<uid> where that path
    is too long for unix sockets."""
    cached = str(cache_root() / "vm-state")
    if len(cached.encode()) <= ROOT_MAX:
        return cached, "the user's cache directory"
    return FALLBACK_ROOT, (
        f"{cached} is too long for QEMU's unix sockets (over {ROOT_MAX} bytes), so {FALLBACK_ROOT}"
    )


def state_root() -> str:
    """Where fleets keep sockets, disks and logs: `$NDH_STATE_DIR`, else `default_root()`."""
    return os.environ.get(ENV) or default_root()[0]


def describe_root() -> str:
    """One line for the pytest header: where state goes, how to move it, and whether it is
    refused."""
    if os.environ.get(ENV):
        line = f"{os.environ[ENV]} (from ${ENV})"
    else:
        root, why = default_root()
        line = f"{root} ({why}; set ${ENV} to a short directory on a disk with room to move it)"
    try:
        problem = problem_of(Path(state_root()))
    except FileNotFoundError:
        problem = None  # made 0700 by the first fleet
    return line + (f"; REFUSED: {problem}, so no fleet can boot" if problem else "")


def trusted_root(root: str | None = None) -> Path | None:
    """The state root, checked (UntrustedDirectory if it fails the trust rule), or None if
    there is none yet."""
    parent = Path(root or state_root())
    try:
        return require_private(parent, WHAT, OTHERWISE)
    except FileNotFoundError:
        return None


def make(name: str, root: str | None = None) -> Path:
    """A fresh private state directory owned by this process, in the state root (made 0700 if
    missing; UntrustedDirectory if it fails the trust rule)."""
    parent = make_private(Path(root or state_root()), WHAT, OTHERWISE)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name[:12]}-", dir=parent))
    owner = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def abandoned(root: str | None = None) -> list[Path]:
    """State directories under `root` whose owner process is gone (UntrustedDirectory if the
    root fails the trust rule: nothing in it is surely ours)."""
    found: list[Path] = []
    parent = trusted_root(root)
    if parent is None:
        return found
    for path in parent.glob(f"{PREFIX}*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            owner = json.loads((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if not isinstance(owner, dict):
            continue  # not an owner file of ours
        if not is_running(owner.get("pid"), owner.get("start_time")):
            found.append(path)
    return found


def collect(root: str | None = None) -> list[Path]:
    """Remove the state directories of dead runs; returns what was removed."""
    return remove(abandoned(root))


def remove(paths: list[Path]) -> list[Path]:
    """Remove these directories as far as possible; returns those that are gone."""
    removed = []
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
