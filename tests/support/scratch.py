"""Scratch directories of the self-tests: `/tmp/ndh-<kind>-<run>-XXXX` (short, for unix socket
paths), where <run> is this test run's token (tests/conftest.py), so that a directory a test
leaves behind is found and named at the end of the run, even when other runs share /tmp."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .processes import processes_mentioning

RUN_TOKEN_ENV = "NDH_SELFTEST_RUN"


def run_token() -> str:
    return os.environ.get(RUN_TOKEN_ENV, "solo")


def scratch_dir(kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ndh-{kind}-{run_token()}-", dir="/tmp"))


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
