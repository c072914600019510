"""pytest --reuse-fleet: a run against a kept fleet (`deploy-harness up`) instead of a new boot;
the fleet is restored to its pristine snapshot before each test (also the first: a person may
have used it), runs on afterwards, and is free for deploy-harness again."""
from __future__ import annotations

import subprocess
import sys

CHILD_TESTS = '''
import pytest
from harness.fleet_specs import MICRO


@pytest.mark.fleet(MICRO)
def test_first(fleet):
    fleet["alpha"].fail("test -e /persist/left-by-a-person")
    fleet["alpha"].succeed("echo test > /persist/left-by-a-test")


@pytest.mark.fleet(MICRO)
def test_second(fleet):
    fleet["alpha"].fail("test -e /persist/left-by-a-test")
'''


def test_a_run_reuses_a_kept_fleet_and_restores_it_before_each_test(cli, tmp_path):
    cli.up("--name", "reused")
    before = set(cli.recorded_processes("reused"))
    cli.ok("run", "alpha", "--fleet", "reused", "--", "echo person > /persist/left-by-a-person")
    (tmp_path / "test_reuse_child.py").write_text(CHILD_TESTS)
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider",
         f"--vm-accel={cli.accel}", "--reuse-fleet", "reused", "test_reuse_child.py"],
        cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "2 passed" in child.stdout
    assert "fleet micro: reusing kept fleet reused" in child.stdout
    assert "booting" not in child.stdout
    # The same QEMUs and switch, still running, and free for deploy-harness again.
    assert set(cli.recorded_processes("reused")) == before
    assert cli.running_processes() == before
    assert cli.state("reused")["last_test"] == "test_reuse_child.py::test_second"
    assert cli.ok("run", "alpha", "--fleet", "reused", "--", "echo free") == "free\n"
    cli.ok("down", "--fleet", "reused")


def test_a_kept_fleet_of_other_nodes_is_not_used(cli, tmp_path):
    cli.up("--name", "other")
    (tmp_path / "test_other_child.py").write_text(
        "import pytest\nfrom harness.fleet import FleetSpec, NodeSpec\n"
        "SOLO = FleetSpec('solo', {'solo': NodeSpec(vlans=())})\n\n"
        "@pytest.mark.fleet(SOLO)\ndef test_solo(fleet):\n    fleet['solo'].succeed('true')\n"
    )
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider",
         f"--vm-accel={cli.accel}", "--reuse-fleet", "other", "test_other_child.py"],
        cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "--reuse-fleet: none of other has the nodes of fleet solo (other: lacks node solo;" in child.stdout
    assert "); booting it" in child.stdout
    cli.ok("down", "--fleet", "other")
