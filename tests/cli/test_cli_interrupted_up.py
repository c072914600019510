"""`deploy-harness up` stopped while its fleet boots: SIGTERM tears down like Ctrl-C; after a
SIGKILL, `status` lists the processes the interrupted boot left and `down` ends them by pid.
Real micro VMs, real signals."""
from __future__ import annotations

import signal
import subprocess

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from cli_testlib import DEPLOY_HARNESS, all_gone


def start_up_and_wait_for_qemu(cli) -> tuple[subprocess.Popen, set]:
    up = subprocess.Popen(
        [str(DEPLOY_HARNESS), "up", "--accel", cli.accel], env=cli.env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    booting = Retrying(stop=stop_after_delay(120), wait=wait_fixed(0.1), retry=retry_if_result(lambda found: not found))
    processes = booting(lambda: {p for p in cli.running_processes() if _comm(p[0]).startswith("qemu-system")})
    assert up.poll() is None, "up finished booting before it could be interrupted"
    return up, processes


def test_sigterm_while_booting_tears_down_like_ctrl_c(cli):
    up, processes = start_up_and_wait_for_qemu(cli)
    up.send_signal(signal.SIGTERM)
    _, stderr = up.communicate(timeout=60)
    assert up.returncode == 130 and "interrupted" in stderr
    assert all_gone(processes) and not cli.running_processes()


def test_after_sigkill_status_lists_the_live_processes_and_down_ends_them(cli):
    up, processes = start_up_and_wait_for_qemu(cli)
    up.kill()
    up.wait(30)
    status = cli("status", "--fleet", "micro")
    for pid, _ in processes:
        assert f"process {pid} still runs" in status.stdout, status.stdout
    cli.ok("down", "--fleet", "micro")
    assert all_gone(processes) and not cli.running_processes()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read()
    except OSError:
        return ""
