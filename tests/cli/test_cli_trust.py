"""deploy-harness trusts nothing it did not make: a fleets root or fleet directory that is not a
private directory of the user's is refused by every command; lock and state files are never
opened through a symlink; and the pids in a state file are never signalled unless the process
is one of the fleet's (its command line names the fleet's directory). No VM boots here: the
fleets are forged, as someone else could forge them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import scratch_dir
from cli_testlib import Cli, require_console_script

from harness.vm.adopted import is_running, start_time

NOBODY = 65534
# Every command, with the arguments that get it as far as the fleets root.
COMMANDS = [
    ("status",), ("run", "alpha", "true"), ("shell", "alpha"), ("down",), ("down", "--all"),
    ("logs", "alpha"), ("snapshot", "alpha", "s"), ("restore", "alpha", "s"),
]


@pytest.fixture
def make_cli(request: pytest.FixtureRequest):
    """A Cli on a fresh fleets root in /tmp (short: unix socket paths)."""
    require_console_script()
    made = []

    def make() -> Cli:
        made.append(scratch_dir("trust"))
        return Cli(made[-1], request.config.getoption("--vm-accel"))

    yield make
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bystander():
    """An unrelated process of ours, as the pid a forger writes into fleet.json."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _needs_root() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root: a directory owned by another user is made with os.chown")


def _forge(fleets_dir: Path, name: str, pids: list[tuple[int, int | None]]) -> Path:
    """A fleet directory whose fleet.json says node alpha (and its switches) run as `pids`."""
    directory = fleets_dir / name
    (directory / "alpha").mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)
    (pid, started), *switches = pids
    node = {
        "name": "alpha", "pid": pid, "started": started, "state_dir": str(directory / "alpha"),
        "start_script": "/nonexistent/run-alpha-vm", "token": "forged", "vlans": {}, "allow_reboot": False,
        "accel": "tcg", "forwards": [], "boot_timeout": 10,
    }
    state = {
        "format": 1, "name": name, "status": "up", "nodes": {"alpha": node},
        "switches": [{"vlan": n, "pid": p, "started": s} for n, (p, s) in enumerate(switches, 1)],
    }
    (directory / "fleet.json").write_text(json.dumps(state))
    return directory


def test_a_fleets_root_of_another_user_is_refused_by_every_command(make_cli, bystander):
    _needs_root()
    cli = make_cli()
    # Someone else made the root first (as /tmp/ndh-<uid> can be) and planted a fleet in it
    # whose pid is a process of ours.
    _forge(cli.fleets_dir, "planted", [(bystander.pid, start_time(bystander.pid))])
    for path in (cli.fleets_dir, cli.fleets_dir / "planted"):
        os.chown(path, NOBODY, NOBODY)
    refusal = f"refusing to use the fleets directory {cli.fleets_dir}: it belongs to uid {NOBODY}, not to you"
    for args in [*COMMANDS, ("up", "--accel", cli.accel)]:
        result = cli(*args)
        assert result.returncode == (255 if args[0] == "run" else 1), (args, result)
        assert refusal in result.stderr, (args, result.stderr)
        assert "set NDH_FLEETS_DIR to a private directory of yours" in result.stderr
        assert "planted" not in result.stdout
    assert bystander.poll() is None  # `down --all` sent it nothing


@pytest.mark.parametrize("kind", ["group-readable", "symlink"])
def test_a_fleets_root_that_is_not_private_is_refused(make_cli, kind, tmp_path):
    cli = make_cli()
    if kind == "group-readable":
        cli.fleets_dir.chmod(0o750)
        expected = f"its mode is drwxr-x---, so others can enter it. To go on: `chmod 700 {cli.fleets_dir}`"
    else:
        target = scratch_dir("trust-target")
        cli.fleets_dir.rmdir()
        cli.fleets_dir.symlink_to(target)
        expected = "it is a symbolic link"
    try:
        for args in COMMANDS:
            result = cli(*args)
            assert result.returncode == (255 if args[0] == "run" else 1), (args, result)
            assert f"refusing to use the fleets directory {cli.fleets_dir}: {expected}" in result.stderr
    finally:
        if kind == "symlink":
            cli.fleets_dir.unlink()
            shutil.rmtree(target)


def test_a_fleet_directory_that_is_a_symlink_is_refused(make_cli):
    cli = make_cli()
    elsewhere = scratch_dir("trust-elsewhere")
    try:
        (cli.fleets_dir / "linked").symlink_to(elsewhere)
        for args in (("status",), ("down", "--all"), ("run", "--fleet", "linked", "alpha", "true")):
            result = cli(*args)
            assert result.returncode in (1, 255)
            assert f"refusing to use the fleet directory {cli.fleets_dir / 'linked'}: it is a symbolic link" \
                in result.stderr
        assert elsewhere.exists()
    finally:
        shutil.rmtree(elsewhere)


def test_a_symlinked_attach_lock_is_not_followed(make_cli, bystander, tmp_path):
    cli = make_cli()
    # A file `run` must not truncate (as a root-owned file was, through the lock).
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    directory = _forge(cli.fleets_dir, "forged", [(bystander.pid, start_time(bystander.pid))])
    (directory / "alpha" / "attach.lock").symlink_to(victim)
    result = cli("run", "alpha", "true")
    assert result.returncode == 255
    assert f"refusing the lock of node alpha, {directory / 'alpha' / 'attach.lock'}: it is a symbolic link" \
        in result.stderr
    assert victim.read_text() == "precious\n"


def test_a_symlinked_state_file_is_not_read(make_cli, bystander, tmp_path):
    cli = make_cli()
    directory = _forge(cli.fleets_dir, "forged", [(bystander.pid, start_time(bystander.pid))])
    real = tmp_path / "fleet.json"
    (directory / "fleet.json").rename(real)
    (directory / "fleet.json").symlink_to(real)
    out = cli("status").stdout
    assert "fleet forged: stale: its fleet.json is unreadable" in out


def test_a_forged_fleet_never_gets_unrelated_processes_signalled(make_cli, bystander):
    other = subprocess.Popen(["sleep", "300"])
    try:
        cli = make_cli()
        # One pid with its true start time (a forger can read it), one with a wrong one.
        wrong = (other.pid, start_time(other.pid) + 1)
        _forge(cli.fleets_dir, "forged", [(bystander.pid, start_time(bystander.pid)), wrong])
        assert "fleet forged: degraded" in cli.ok("status")  # so the record alone says
        out = cli.ok("down", "--fleet", "forged")
        assert "fleet forged is down" in out and "(no process was left)" in out
        _forge(cli.fleets_dir, "again", [(bystander.pid, start_time(bystander.pid)), (other.pid, start_time(other.pid))])
        assert "fleet again is down" in cli.ok("down", "--all")
        assert bystander.poll() is None and other.poll() is None
        assert is_running(bystander.pid, start_time(bystander.pid))
    finally:
        other.kill()
        other.wait()


def test_a_node_directory_outside_the_fleet_is_refused(make_cli, bystander, tmp_path):
    cli = make_cli()
    directory = _forge(cli.fleets_dir, "forged", [(bystander.pid, start_time(bystander.pid))])
    state = json.loads((directory / "fleet.json").read_text())
    state["nodes"]["alpha"]["state_dir"] = str(tmp_path)
    (directory / "fleet.json").write_text(json.dumps(state))
    result = cli("run", "alpha", "true")
    assert result.returncode == 255
    assert f"node alpha has its state in {tmp_path}, outside {directory}" in result.stderr
    assert not (tmp_path / "attach.lock").exists()


def test_keep_vms_refuses_a_fleets_root_of_another_user(make_cli, tmp_path):
    _needs_root()
    cli = make_cli()
    os.chown(cli.fleets_dir, NOBODY, NOBODY)
    (tmp_path / "test_child.py").write_text(
        "import pytest\nfrom harness.fleet import FleetSpec, NodeSpec\n"
        "@pytest.mark.fleet(FleetSpec('kept', {'solo': NodeSpec(vlans=())}))\n"
        "def test_never_boots(fleet):\n    pass\n"
    )
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--keep-vms", "--vm-accel=tcg", "test_child.py"],
        cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=120,
    )
    refusal = f"refusing to use the fleets directory {cli.fleets_dir}: it belongs to uid {NOBODY}"
    assert child.returncode == 1 and "1 error" in child.stdout, child.stdout + child.stderr
    assert "INTERNALERROR" not in child.stdout + child.stderr
    assert f"[vm] --keep-vms: {refusal}" in child.stdout
    assert not any(cli.fleets_dir.iterdir())
