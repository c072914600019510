"""The pytest plugin, exercised through child pytest runs (pytester) with real micro VMs."""
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from support import processes_mentioning, scratch_dir

FLEET_HEADER = """
import os, signal, time
import pytest
from harness.fleet import FleetSpec, NodeSpec
ONE = FleetSpec("child", {"node": NodeSpec(vlans=())})
"""


# The child pytest starts as from a terminal, with default signal dispositions: this run may
# have been started under `nohup` or with `&` (SIGHUP, or SIGINT and SIGQUIT, ignored), which
# every child would inherit, and a pytest that ignores SIGHUP rightly does not tear down on it.
AS_FROM_A_TERMINAL = (
    "import os, signal, sys\n"
    "for number in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):\n"
    "    signal.signal(number, signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pytest', *sys.argv[1:]])\n"
)


@pytest.fixture
def child(pytester, monkeypatch):
    """Runs pytest in a subprocess (pytester) on the given test files, with fleets' state under a
    directory of its own; returns (the run, the processes it left)."""
    state_root = scratch_dir("child")
    monkeypatch.setenv("NDH_STATE_DIR", str(state_root))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")

    def run(files: dict[str, str], *args: str):
        pytester.makepyfile(**{Path(name).stem: FLEET_HEADER + textwrap.dedent(body) for name, body in files.items()})
        result = pytester.run(sys.executable, "-c", AS_FROM_A_TERMINAL, f"--basetemp={pytester.path / 'child-tmp'}",
                              "-p", "no:cacheprovider", "--vm-accel=tcg", *args, timeout=600)
        time.sleep(0.5)  # let PR_SET_PDEATHSIG and stdin EOF reach orphans
        ran = SimpleNamespace(returncode=result.ret, stdout=result.stdout.str(), stderr=result.stderr.str())
        return ran, processes_mentioning(str(state_root))

    run.state_root = state_root
    yield run
    leftovers = processes_mentioning(str(state_root))
    for pid in leftovers:  # only our own children's processes, found by our unique dir
        os.kill(pid, 9)
    shutil.rmtree(state_root, ignore_errors=True)
    assert not leftovers, f"child run left processes behind: {leftovers}"


def test_boots_once_restores_per_test_and_saves_artifacts_of_failures(child, pytester):
    proc, leftovers = child({"test_a.py": """
        @pytest.mark.fleet(ONE)
        def test_writes(fleet):
            fleet["node"].succeed("echo x > /persist/x")

        @pytest.mark.fleet(ONE)
        def test_sees_pristine_state(fleet):
            fleet["node"].fail("test -e /persist/x")

        @pytest.mark.fleet(ONE)
        def test_fails(fleet):
            fleet["node"].succeed("echo on-the-way-down")
            assert False
        """}, "--vm-artifacts", "arts")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 2 passed" in proc.stdout
    assert proc.stdout.count("booting 1 node(s) of fleet child") == 1
    transcript = pytester.path / "arts" / "test_a.py_test_fails" / "node.transcript.log"
    assert str(Path("arts") / "test_a.py_test_fails" / "node.serial.log") in proc.stdout
    assert "on-the-way-down" in transcript.read_text()
    assert leftovers == []


def test_fleet_without_marker_is_a_usage_error(child):
    proc, _ = child({"test_b.py": """
        def test_needs_marker(fleet):
            pass
        """})
    assert proc.returncode != 0
    assert "needs @pytest.mark.fleet(FleetSpec(...))" in proc.stdout + proc.stderr


def test_module_scoped_fleet_is_gone_after_its_module(child):
    proc, leftovers = child({
        "test_c1.py": """
        @pytest.mark.fleet(ONE, scope="module")
        def test_uses(fleet):
            fleet["node"].succeed("true")
        """,
        "test_c2.py": """
        def test_first_fleet_released():
            from support import processes_mentioning
            assert processes_mentioning(os.environ["NDH_STATE_DIR"]) == []
        """}, "-o", f"pythonpath={Path(__file__).parents[1]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert leftovers == []


def test_no_vm_outlives_a_keyboard_interrupt(child):
    proc, leftovers = child({"test_d.py": """
        @pytest.mark.fleet(ONE)
        def test_interrupted(fleet):
            fleet["node"].succeed("true")
            # As a person's Ctrl-C, also when pytest was started with SIGINT ignored (nohup, &).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        """})
    assert "KeyboardInterrupt" in proc.stdout + proc.stderr
    assert leftovers == []


def test_no_vm_outlives_a_killed_xdist_worker(child):
    proc, leftovers = child({"test_e.py": """
        @pytest.mark.fleet(ONE)
        def test_worker_dies(fleet):
            fleet["node"].succeed("true")
            os.kill(os.getpid(), signal.SIGKILL)

        def test_other():
            pass
        """}, "-n", "2")
    assert "worker" in (proc.stdout + proc.stderr).lower() and "crashed" in (proc.stdout + proc.stderr).lower()
    assert leftovers == []


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_tear_down_like_ctrl_c(child, name):
    proc, leftovers = child({"test_f.py": f"""
        @pytest.mark.fleet(ONE)
        def test_terminated(fleet):
            fleet["node"].succeed("true")
            os.kill(os.getpid(), signal.{name})
            time.sleep(30)
        """})
    assert f"KeyboardInterrupt: {name} received" in proc.stdout + proc.stderr
    assert leftovers == []


def test_a_killed_run_leaves_state_that_the_next_run_removes(child):
    proc, leftovers = child({"test_g.py": """
        @pytest.mark.fleet(ONE)
        def test_killed(fleet):
            fleet["node"].succeed("true")
            os.kill(os.getpid(), signal.SIGKILL)
        """})
    assert proc.returncode == -9 and leftovers == []
    state_root = Path(child.state_root)
    dead = list(state_root.glob("ndh-child-*"))
    assert len(dead) == 1 and (dead[0] / "owner.json").exists(), "the killed run's state stays"
    proc, _ = child({"test_h.py": """
        def test_nothing():
            pass
        """}, "test_h.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"removed 1 state directory of dead runs: {dead[0]}" in proc.stdout
    assert not dead[0].exists()


def test_the_tests_of_one_fleet_run_in_one_xdist_worker(child, pytester):
    """`-n 2` without --dist: one fleet per run (docs/snapshots.md, "Parallel runs")."""
    fleet_tests = """
        @pytest.mark.fleet(ONE)
        def test_{name}(fleet):
            import pathlib
            worker = os.environ.get("PYTEST_XDIST_WORKER", "none")
            pathlib.Path("seen", "{name}").write_text(f"{{worker}} {{fleet.state_dir}}")
        """
    (pytester.path / "seen").mkdir()
    files = {
        "test_a.py": "".join(fleet_tests.format(name=f"a{n}") for n in range(3)),
        "test_b.py": "".join(fleet_tests.format(name=f"b{n}") for n in range(3)),
        "test_c.py": "".join(f"\ndef test_plain_{n}():\n    time.sleep(0.2)\n" for n in range(6)),
    }
    proc, leftovers = child(files, "-n", "2", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vm fleets: one per run" in proc.stdout
    seen = {path.name: path.read_text().split() for path in (pytester.path / "seen").iterdir()}
    assert len(seen) == 6
    assert len({worker for worker, _ in seen.values()}) == 1, seen
    assert len({state for _, state in seen.values()}) == 1, "one fleet booted for all six tests"
    assert leftovers == []
