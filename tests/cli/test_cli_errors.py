"""deploy-harness on bad input: no fleet, bad specs, and stale state left by killed runs. Each
gives a clear message and a non-zero exit (cli_testlib.Cli asserts there is no traceback)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time

import psutil
import pytest
from cli_testlib import DEPLOY_HARNESS, all_gone

from harness.vm.adopted import is_running


@pytest.mark.parametrize(
    "args, code",
    [
        (("status",), 1),
        (("run", "alpha", "true"), 255),
        (("shell", "alpha"), 1),
        (("logs", "alpha"), 1),
        (("snapshot", "alpha", "s"), 1),
        (("restore", "alpha", "s"), 1),
    ],
)
def test_without_a_fleet_every_command_says_how_to_start_one(cli, args, code):
    result = cli(*args)
    assert result.returncode == code
    assert "no fleet is running" in result.stdout + result.stderr
    assert "deploy-harness up" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (("down",), "nothing to stop: no fleet is running (none in {root})"),
        (("down", "--all"), "nothing to stop: no fleet in {root}"),
        (("down", "--fleet", "nosuch"), "nothing to stop: no fleet named 'nosuch' in {root} (fleets: none)"),
    ],
)
def test_down_with_nothing_to_stop_says_so_and_succeeds(cli, args, says):
    result = cli(*args)
    assert (result.returncode, result.stdout, result.stderr) == (0, says.format(root=cli.fleets_dir) + "\n", "")


@pytest.mark.parametrize(
    "words, error",
    [
        (("--bogus", "true"), "run: unrecognized arguments: --bogus (a command that starts with '-' goes after `--`)"),
        (("--timeout", "soon", "true"), "run: argument --timeout: must be a positive number of seconds, not 'soon'"),
        (("--timeout",), "run: argument --timeout: expected one argument"),
        (("--fleet", "x", "--"), "run: no command given"),
    ],
)
def test_run_refuses_bad_options_after_the_node_with_its_usage(cli, words, error):
    result = cli("run", "alpha", *words)
    assert result.returncode == 255
    assert result.stderr == f"deploy-harness: {error}\n" \
        "usage: deploy-harness run NODE [--fleet NAME] [--timeout SECONDS] [--] CMD...\n"


def test_bad_specs_are_refused_before_anything_boots(cli, tmp_path):
    result = cli("up", "--spec", "nosuch")
    assert result.returncode == 1 and "unknown fleet spec 'nosuch'" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": {"a": {"vlan": [1]}}}')
    result = cli("up", "--spec", str(broken))
    assert result.returncode == 1 and "node a: unknown keys ['vlan']" in result.stderr
    module = tmp_path / "specs.py"
    module.write_text("from harness.fleet import FleetSpec, NodeSpec\nPAIR = FleetSpec('p', {'a': NodeSpec()})\n")
    result = cli("up", "--spec", f"{module}:NOPE")
    assert result.returncode == 1 and "has no FleetSpec named 'NOPE' (FleetSpecs in it: PAIR)" in result.stderr
    result = cli("up", "--name", "bad/name")
    assert result.returncode == 1 and "fleet name 'bad/name' is not usable" in result.stderr
    assert not any(cli.fleets_dir.iterdir())


def test_a_fleet_whose_processes_were_killed_is_stale(cli, tmp_path):
    spec = tmp_path / "lone.json"
    spec.write_text(json.dumps({"name": "lone", "nodes": {"lone": {"vlans": []}}}))
    cli.up("--spec", str(spec))
    [(pid, started)] = cli.recorded_processes("lone")
    os.kill(pid, signal.SIGKILL)  # a run killed the hard way (our own QEMU, by its pid)
    deadline = time.monotonic() + 10
    while is_running(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)

    out = cli("status").stdout
    assert f"fleet lone: stale: its processes are gone: QEMU of lone (pid {pid}) not running" in out
    assert "remove it with: " in out and "deploy-harness down --fleet lone" in out
    for args in (("run", "lone", "true"), ("shell", "lone"), ("snapshot", "lone", "s")):
        result = cli(*args)
        assert result.returncode == (255 if args[0] == "run" else 1)
        assert "fleet lone is stale: its processes are gone" in result.stderr
        assert "deploy-harness down --fleet lone" in result.stderr
    assert "connecting to host..." in cli.ok("logs", "lone")  # its logs still tell the story
    result = cli("up", "--spec", str(spec))
    assert result.returncode == 1 and "a fleet named lone exists already (stale" in result.stderr

    assert "fleet lone is down" in cli.ok("down")
    assert not (cli.fleets_dir / "lone").exists()


def test_an_interrupted_up_leaves_a_stale_fleet_that_down_cleans_up(cli):
    up = subprocess.Popen(
        [str(DEPLOY_HARNESS), "up", "--accel", cli.accel, "--name", "cut"],
        env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Kill `up` once its QEMUs run: unleashed, they outlive it, and no state file lists them.
        deadline = time.monotonic() + 120
        while len([p for p in cli.running_processes() if "qemu" in _program(p[0])]) < 2:
            assert up.poll() is None, "up ended before it started its VMs"
            assert time.monotonic() < deadline, "up started no VMs within 120 s"
            time.sleep(0.05)
        up.send_signal(signal.SIGKILL)
        up.wait(10)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
    left = cli.running_processes()
    assert left, "the VMs of the killed `up` should still run"

    out = cli("status").stdout
    assert f"fleet cut: stale: its boot was interrupted (deploy-harness up, pid {up.pid}, is gone)" in out
    result = cli("run", "alpha", "true")
    assert result.returncode == 255 and "fleet cut is stale" in result.stderr
    # As `run` suggests: its logs are there, though the record lists no node yet.
    assert cli("logs", "alpha", "--fleet", "cut").returncode == 0
    assert "# starting " in cli.ok("logs", "alpha", "--fleet", "cut", "--transcript")
    result = cli("logs", "gamma", "--fleet", "cut")
    assert result.returncode == 1
    assert "it has no directory of a node 'gamma'" in result.stderr and "(node directories there: alpha, beta)" in result.stderr

    out = cli.ok("down", "--fleet", "cut")
    assert "fleet cut is down" in out
    assert all_gone(left)
    assert not cli.running_processes()
    assert not (cli.fleets_dir / "cut").exists()


def _program(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def test_a_fleet_that_does_not_boot_leaves_nothing_behind(cli, tmp_path):
    # An image whose start script exits at once, on a VLAN: its switch, a daemon in keep mode,
    # must go too.
    module = tmp_path / "failing_image.py"
    module.write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from harness.fleet import FleetSpec, NodeSpec

        @dataclass(frozen=True)
        class ExitsAtOnce:
            def accel_options(self, accel):
                return ("-accel", accel)

            snapshot_drive = None

            def start_scripts(self, spec, state_dir, progress):
                scripts = {}
                for name in spec.nodes:
                    script = state_dir / name / "bin" / f"run-{name}-vm"
                    script.parent.mkdir(parents=True)
                    script.write_text("#!/bin/sh\\necho cannot start >&2\\nexit 3\\n")
                    script.chmod(0o755)
                    scripts[name] = script
                return scripts

        FAILING = FleetSpec("failing", {"a": NodeSpec(vlans=(1,))}, image=ExitsAtOnce())
    """))
    result = cli("up", "--accel", cli.accel, "--spec", f"{module}:FAILING")
    assert result.returncode == 1
    assert "fleet failing did not boot: MachineStartError: machine a: did not become ready: " \
        "QEMU exited with status 3" in result.stderr
    assert "cannot start" in result.stderr  # the serial tail says why
    assert not (cli.fleets_dir / "failing").exists()
    assert not cli.running_processes()
