"""Fixtures for the deploy-harness CLI tests (helpers: cli_testlib.py). Each test module gets
its own fleets directory; at its end every fleet in it is brought down and no process of it
may be left."""
from __future__ import annotations

import shutil

import pytest

from support import scratch_dir
from cli_testlib import Cli, all_gone, require_console_script


@pytest.fixture(scope="module")
def cli(request: pytest.FixtureRequest):
    require_console_script()
    # Short, in /tmp: unix socket paths in fleets must stay under 108 bytes.
    fleets_dir = scratch_dir("cli")
    accel = request.config.getoption("--vm-accel")
    runner = Cli(fleets_dir, accel)
    try:
        yield runner
    finally:
        left = runner.running_processes()
        runner("down", "--all")
        assert all_gone(left), f"processes of {fleets_dir} survived `deploy-harness down --all`: {left}"
        assert not runner.running_processes()
        shutil.rmtree(fleets_dir, ignore_errors=True)
