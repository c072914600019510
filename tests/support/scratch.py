"""Scratch directories of the self-tests: `/tmp/ndh-<kind>-<run>-XXXX` (short, for unix socket
paths), where <run> is this test run's token (tests/conftest.py), so that a directory a test
leaves behind is found and named at the end of the run, even when other runs share /tmp.

The token names the run's owner, the pid and start time of the pytest process that began it
(`<pid>x<start time>` in hex): a run that was killed (SIGTERM to an xdist controller whose
workers were then killed, SIGKILL, a lost machine) cannot remove its directories, and a later
run removes those whose owner is gone and that no live process names (`collect_abandoned`)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from harness import state_dirs
from harness.vm.adopted import is_running, start_time

from .processes import processes_mentioning

RUN_TOKEN_ENV = "NDH_SELFTEST_RUN"
# Where scratch directories go: /tmp, or $NDH_SELFTEST_TMP (a test of this module's own).
ROOT_ENV = "NDH_SELFTEST_TMP"
# <kind> may hold '-'; mkdtemp's suffix never does.
_OWNED_NAME = re.compile(r"ndh-.+-([0-9a-f]+)x([0-9a-f]+)-[a-z0-9_]+")


def new_run_token() -> str:
    """The token of a run this process begins: its own pid and start time."""
    pid = os.getpid()
    return f"{pid:x}x{start_time(pid) or 0:x}"


def run_token() -> str:
    return os.environ.get(RUN_TOKEN_ENV, "solo")


def scratch_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/tmp")


def scratch_dir(kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ndh-{kind}-{run_token()}-", dir=scratch_root()))


def owner_of(path: Path) -> tuple[int, int] | None:
    """(pid, start time) of the run that made scratch directory `path`; None if its name
    carries no owner (another kind of directory, or a run outside pytest: "solo")."""
    match = _OWNED_NAME.fullmatch(path.name)
    return (int(match.group(1), 16), int(match.group(2), 16)) if match else None


def abandoned(root: Path | None = None) -> list[Path]:
    """This user's scratch directories under `root` whose run is gone and that no live process
    names on its command line (say a VM of an orphaned child run, still going down)."""
    found = []
    for path in sorted((root or scratch_root()).glob("ndh-*")):
        owner = owner_of(path)
        try:
            ours = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid()
        except OSError:
            continue  # gone meanwhile
        if ours and owner is not None and not is_running(*owner) and not processes_mentioning(str(path)):
            found.append(path)
    return found


def collect_abandoned(root: Path | None = None) -> list[Path]:
    """Remove the scratch directories of dead runs; returns what was removed."""
    return state_dirs.remove(abandoned(root))


@contextlib.contextmanager
def vm_scratch_dir(kind: str) -> Iterator[Path]:
    """A scratch directory for machines started by hand: removed afterwards, and a failure if
    any process still mentions it (a QEMU or switch the test left running)."""
    path = scratch_dir(kind)
    try:
        yield path
    finally:
        leftovers = processes_mentioning(str(path))
        shutil.rmtree(path, ignore_errors=True)
    assert not leftovers, f"processes left behind: {leftovers}"
