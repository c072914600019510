"""The deploy runner over the real backdoor of a micro VM, with a STAND-IN for the deploy-rs
binary (a shell script in the guest that prints recorded deploy-rs lines and exits with a
chosen status). What host bash cannot show: the runner's line through the backdoor's framing
(`eval` in a subshell, stdin /dev/null), quoting through that eval, and an orphaned child that
keeps deploy's output open inside the guest. deploy-rs itself is tested by the VM scenarios."""
from __future__ import annotations

import time

import deploy_rs_logs as logs
import pytest

from harness.deploy import DeployOptions, run_deploy
from harness.fleet import FleetSpec, NodeSpec

DEPLOYER = FleetSpec("runner", {"deployer": NodeSpec(vlans=())})

STAND_IN = """#!/bin/sh
# Stand-in for the deploy-rs `deploy` binary (runner plumbing tests only).
rec=/tmp/standin
printf '%s\\n' "$@" > $rec/argv
printf '%s' "${HOMELAB_DEPLOY_TEST_HOST-unset}" > $rec/env
pwd > $rec/pwd
cat $rec/log-lines >&2
if [ "${STAND_IN_MODE:-}" = orphan ]; then
  # Like deploy-rs's leftover `activate-rs wait` ssh: a child that keeps our output open.
  sleep 30 &
  echo $! > $rec/orphan.pid
fi
exit $(cat $rec/status)
"""


@pytest.fixture
def deployer(fleet, tmp_path):
    machine = fleet["deployer"]
    script = tmp_path / "deploy"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    machine.succeed("mkdir -p /tmp/standin")
    machine.copy_from_host(script, "/bin/deploy")
    return machine


@pytest.fixture
def stand_in(deployer, tmp_path):
    """`stand_in(log_lines, status)`: what the stand-in deploy prints and exits with."""

    def install(log_lines: str, status: int) -> None:
        (tmp_path / "log-lines").write_text(log_lines)
        deployer.copy_from_host(tmp_path / "log-lines", "/tmp/standin/log-lines")
        deployer.succeed(f"echo {status} > /tmp/standin/status")

    return install


@pytest.mark.fleet(DEPLOYER)
def test_success_over_the_backdoor(deployer, stand_in):
    stand_in(logs.success(True), 0)
    result = run_deploy(deployer, ".#target", log_path="/tmp/deploy.log", timeout=60)
    assert result.exit_code == 0
    assert result.confirmed == (("target", "system"),)
    assert "\x1b" not in result.log
    assert deployer.succeed("cat /tmp/deploy.log") == logs.success(True)  # raw log kept
    assert deployer.succeed("cat /tmp/standin/argv") == ".#target\n"


@pytest.mark.fleet(DEPLOYER)
def test_failure_and_rollback_claim_over_the_backdoor(deployer, stand_in):
    stand_in(logs.auto_rollback(False), 1)
    result = run_deploy(deployer, ".#target", log_path="/tmp/deploy.log", timeout=60)
    assert result.exit_code == 1 and result.rollback_claimed == "auto"


@pytest.mark.fleet(DEPLOYER)
def test_an_orphan_holding_deploy_s_output_does_not_block_the_backdoor(deployer, stand_in):
    stand_in(logs.magic_rollback(False), 1)
    started = time.monotonic()
    result = run_deploy(
        deployer, ".#target", DeployOptions(env={"STAND_IN_MODE": "orphan"}),
        log_path="/tmp/deploy.log", timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 1 and result.rollback_claimed == "magic"
    orphan = deployer.succeed("cat /tmp/standin/orphan.pid").strip()
    deployer.succeed(f"test -d /proc/{orphan}")  # it really was still running
    assert elapsed < 15, f"the runner waited {elapsed:.1f} s for the orphan"
    assert deployer.succeed("echo next") == "next\n"  # the backdoor is in step


@pytest.mark.fleet(DEPLOYER)
def test_env_and_nix_args_survive_the_backdoor_s_eval(deployer, stand_in):
    stand_in(logs.boot(False), 0)
    deployer.succeed("mkdir -p '/tmp/fleet dir'")
    tricky = "target; echo 'pwned' \"$HOME\" `id`"
    result = run_deploy(
        deployer, ".#target",
        DeployOptions(boot=True, env={"HOMELAB_DEPLOY_TEST_HOST": tricky}, nix_args=["--impure"]),
        workdir="/tmp/fleet dir", log_path="/tmp/deploy.log", timeout=60,
    )
    assert result.mode == "boot" and result.activated_for_next_boot == (("target", "system"),)
    assert deployer.succeed("cat /tmp/standin/env") == tricky
    assert deployer.succeed("cat /tmp/standin/pwd") == "/tmp/fleet dir\n"
    assert deployer.succeed("cat /tmp/standin/argv").splitlines() == ["--boot", ".#target", "--", "--impure"]
