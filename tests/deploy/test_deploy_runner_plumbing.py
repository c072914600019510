"""The deploy runner's plumbing, on the host, with a STAND-IN for the deploy-rs binary.

The `deploy` on PATH here is a shell script that records its arguments and environment, prints
recorded deploy-rs lines (deploy_rs_logs.py) and exits with a chosen status. It tests how
run_deploy runs a command on a machine: output to a file, exit status, timeouts, reading the
log, quoting of env and `--` arguments. It does not test deploy-rs; the VM scenarios do.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import deploy_rs_logs as logs
import pytest
from support import HostShell

from harness import deploy
from harness.deploy import DeployError, DeployOptions, run_deploy

STAND_IN = """#!/bin/bash
# Stand-in for the deploy-rs `deploy` binary (runner plumbing tests only).
printf '%s\\0' "$@" > {record}/argv
printf '%s' "${{HOMELAB_DEPLOY_TEST_HOST-unset}}" > {record}/env
pwd > {record}/pwd
cat {record}/log-lines >&2
case "${{STAND_IN_MODE:-}}" in
  orphan)
    # Like deploy-rs's leftover `activate-rs wait` ssh: a child that keeps our output open.
    sleep 30 &
    echo $! > {record}/orphan.pid ;;
  hang)
    exec sleep 30 ;;
  ignore-term)
    trap '' TERM
    sleep 30 ;;
esac
exit {status}
"""


class StandIn:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.record = root / "record"
        self.bin.mkdir()
        self.record.mkdir()

    def install(self, log_lines: str, status: int) -> None:
        (self.record / "log-lines").write_text(log_lines)
        script = self.bin / "deploy"
        script.write_text(STAND_IN.format(record=shlex.quote(str(self.record)), status=status))
        script.chmod(0o755)

    def argv(self) -> list[str]:
        return (self.record / "argv").read_text().split("\0")[:-1]

    def env(self) -> str:
        return (self.record / "env").read_text()


@pytest.fixture
def stand_in(scratch: Path) -> StandIn:
    return StandIn(scratch)


@pytest.fixture
def deployer(scratch: Path, stand_in: StandIn):
    shell = HostShell(
        "deployer", scratch / "deployer-stderr.log", env={"PATH": f"{stand_in.bin}:/usr/bin:/bin"}
    )
    yield shell
    shell.cleanup()


def test_success_log_is_read_from_the_file_and_parsed(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.success(True), status=0)
    log_path = scratch / "deploy.log"
    result = run_deploy(deployer, ".#target", log_path=str(log_path), timeout=30)
    assert result.exit_code == 0
    assert result.confirmed == (("target", "system"),)
    assert log_path.read_text() == logs.success(True)  # raw log kept on the deployer
    assert "\x1b" not in result.log
    assert stand_in.argv() == [".#target"]


def test_failure_status_and_rollback_claim(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.auto_rollback(False), status=1)
    result = run_deploy(deployer, ".#target", log_path=str(scratch / "deploy.log"), timeout=30)
    assert result.exit_code == 1
    assert result.rollback_claimed == "auto"


def test_orphaned_child_holding_output_does_not_block(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    # deploy exits 1 while a child keeps stdout/stderr open for 30 s (docs/deploy-rs-facts.md).
    stand_in.install(logs.magic_rollback(False), status=1)
    deployer.env = {**deployer.env, "STAND_IN_MODE": "orphan"}
    started = time.monotonic()
    result = run_deploy(deployer, ".#target", log_path=str(scratch / "deploy.log"), timeout=30)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert result.rollback_claimed == "magic"
    orphan = int((stand_in.record / "orphan.pid").read_text())
    assert os.path.exists(f"/proc/{orphan}")  # the orphan really was still running
    assert elapsed < 10, f"runner waited {elapsed:.1f} s on the orphan's pipe"


def test_options_env_and_nix_args_are_quoted(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.boot(False), status=0)
    workdir = scratch / "fleet dir"
    workdir.mkdir()
    tricky = "target; echo 'pwned' \"$HOME\" `id`"
    options = DeployOptions(
        boot=True,
        magic_rollback=False,
        auto_rollback=True,
        confirm_timeout=15,
        activation_timeout=60,
        skip_checks=True,
        ssh_opts="-o StrictHostKeyChecking=no -o ControlMaster=no",
        env={"HOMELAB_DEPLOY_TEST_HOST": tricky},
        nix_args=["--impure", "--option", "sandbox", "false"],
    )
    result = run_deploy(
        deployer,
        ".#target",
        options,
        workdir=str(workdir),
        log_path=str(scratch / "deploy.log"),
        timeout=30,
    )
    assert result.mode == "boot"
    assert result.activated_for_next_boot == (("target", "system"),)
    assert stand_in.argv() == [
        "--boot",
        "--magic-rollback",
        "false",
        "--auto-rollback",
        "true",
        "--confirm-timeout",
        "15",
        "--activation-timeout",
        "60",
        "--skip-checks",
        "--ssh-opts",
        "-o StrictHostKeyChecking=no -o ControlMaster=no",
        ".#target",
        "--",
        "--impure",
        "--option",
        "sandbox",
        "false",
    ]
    assert stand_in.env() == tricky
    assert (stand_in.record / "pwd").read_text().strip() == str(workdir)


def test_several_targets_use_targets_flag(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.dry_activate(False), status=0)
    result = run_deploy(
        deployer,
        [".#alpha", ".#beta"],
        DeployOptions(dry_activate=True),
        log_path=str(scratch / "deploy.log"),
        timeout=30,
    )
    assert result.dry_activate_completed
    assert stand_in.argv() == ["--dry-activate", "--targets", ".#alpha", ".#beta"]
    assert stand_in.env() == "unset"


def test_deployer_side_timeout_gives_timed_out(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.success(False), status=0)
    deployer.env = {**deployer.env, "STAND_IN_MODE": "hang"}
    started = time.monotonic()
    result = run_deploy(deployer, ".#target", log_path=str(scratch / "deploy.log"), timeout=1)
    assert time.monotonic() - started < 8  # `timeout 1`, well before its -k 10
    assert result.exit_code == 124 and result.timed_out


def test_a_deploy_that_ignores_sigterm_is_killed_and_counts_as_timed_out(
    deployer: HostShell, stand_in: StandIn, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deploy, "KILL_GRACE", 1)
    stand_in.install(logs.success(False), status=0)
    deployer.env = {**deployer.env, "STAND_IN_MODE": "ignore-term"}
    result = run_deploy(deployer, ".#target", log_path=str(scratch / "deploy.log"), timeout=1)
    assert result.exit_code == 137 and result.timed_out


def test_host_side_timeout_raises_deploy_error(
    deployer: HostShell, stand_in: StandIn, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make the host give up before the deployer-side `timeout` fires: a stuck shell.
    monkeypatch.setattr(deploy, "HOST_TIMEOUT_MARGIN", -1.5)
    stand_in.install(logs.success(False), status=0)
    deployer.env = {**deployer.env, "STAND_IN_MODE": "hang"}
    with pytest.raises(DeployError, match=r"deploy on deployer did not return within"):
        run_deploy(deployer, ".#target", log_path=str(scratch / "deploy.log"), timeout=2)


def test_missing_deploy_binary(scratch: Path) -> None:
    shell = HostShell("deployer", scratch / "stderr.log", env={"PATH": "/usr/bin:/bin"})
    try:
        with pytest.raises(DeployError, match=r"`deploy` could not be started on deployer"):
            run_deploy(shell, ".#target", log_path=str(scratch / "deploy.log"), timeout=30)
    finally:
        shell.cleanup()


def test_missing_workdir_is_a_runner_error(
    deployer: HostShell, stand_in: StandIn, scratch: Path
) -> None:
    stand_in.install(logs.success(False), status=0)
    with pytest.raises(DeployError, match="could not run deploy on deployer"):
        run_deploy(
            deployer,
            ".#target",
            workdir=str(scratch / "absent"),
            timeout=30,
            log_path=str(scratch / "deploy.log"),
        )


def test_boot_and_dry_activate_are_exclusive() -> None:
    with pytest.raises(ValueError):
        DeployOptions(boot=True, dry_activate=True)


def test_bad_env_name_is_refused() -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        deploy.deploy_shell_command(["deploy"], DeployOptions(env={"A B": "x"}), "/tmp/l", 10, None)


def test_each_run_gets_its_own_log_file(
    deployer: HostShell, stand_in: StandIn, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A previous run's orphaned `wait` ssh may still write into its log: never reuse it.
    monkeypatch.setattr(deploy, "LOG_DIR", str(scratch))
    stand_in.install(logs.success(False), status=0)
    first = run_deploy(deployer, ".#target", timeout=30)
    second = run_deploy(deployer, ".#target", timeout=30)
    assert first.log_path != second.log_path
    for result in (first, second):
        assert result.log_path is not None and result.log_path.startswith(str(scratch) + "/")
        assert Path(result.log_path).read_text() == logs.success(False)


def test_fractional_and_invalid_timeouts() -> None:
    line = deploy.deploy_shell_command(["deploy"], DeployOptions(), "/tmp/l", 1.5, None)
    assert "timeout -k 10 1.5 deploy" in line
    with pytest.raises(ValueError, match="timeout must be positive"):
        deploy.deploy_shell_command(["deploy"], DeployOptions(), "/tmp/l", 0, None)
