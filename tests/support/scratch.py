"""Scratch directories of the self-tests: `/tmp/ndh-<kind>-<run>-XXXX` (short, for unix socket
paths), where <run> is this test run's token (tests/conftest.py), so that a directory a test
leaves behind is found and named at the end of the run, even when other runs share /tmp."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

RUN_TOKEN_ENV = "NDH_SELFTEST_RUN"


def run_token() -> str:
    return os.environ.get(RUN_TOKEN_ENV, "solo")


def scratch_dir(kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ndh-{kind}-{run_token()}-", dir="/tmp"))
