"""deploy-harness against one real micro fleet (booted once for this module by `up`): status,
run, snapshot/restore, logs, and the interactive shell driven through a pty."""
from __future__ import annotations

import re
import time

import pexpect
import pytest
from cli_testlib import DEPLOY_HARNESS, as_from_a_terminal

from harness.vm.adopted import is_running

PROMPT = r"alpha:(\S+)# "


@pytest.fixture(scope="module")
def micro(cli):
    """The default fleet: micro, nodes alpha and beta on VLAN 1. Returns `up`'s output."""
    return cli.up()


def test_up_shows_progress_and_prints_the_attach_commands(cli, micro):
    assert "booting 2 node(s) of fleet micro" in micro
    assert re.search(r"fleet micro up in [\d.]+ s", micro)
    prefix = f"NDH_FLEETS_DIR={cli.fleets_dir} "
    for node in ("alpha", "beta"):
        assert f"  {prefix}deploy-harness shell {node} --fleet micro\n" in micro
    assert f"  {prefix}deploy-harness down --fleet micro\n" in micro
    # `up` has returned; its fleet runs on, unleashed.
    processes = cli.recorded_processes("micro")
    assert len(processes) == 3  # alpha, beta, the VLAN 1 switch
    assert all(is_running(pid, started) for pid, started in processes)


def test_status_lists_the_fleet_its_nodes_and_live_pids(cli, micro):
    out = cli.ok("status")
    state = cli.state("micro")
    assert out.startswith("fleet micro: running\n")
    for name, node in state["nodes"].items():
        assert re.search(rf"node {name}\s+running\s+pid {node['pid']}\s+vlans 1", out)
    assert re.search(rf"vlan 1\s+running\s+pid {state['switches'][0]['pid']}", out)


def test_run_prints_stdout_sends_stderr_apart_and_exits_with_the_status(cli, micro):
    result = cli("run", "alpha", "hostname; echo oops >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "alpha\n", "oops\n")
    # Words are joined as ssh does; the nodes reach each other by name on VLAN 1.
    assert "1 packets received" in cli.ok("run", "alpha", "ping", "-c", "1", "-W", "5", "beta")
    assert cli.ok("run", "beta", "--fleet", "micro", "--", "cat /etc/hostname") == "beta\n"


def test_run_options_after_the_node_are_ours_and_never_reach_the_guest(cli, micro):
    # `--timeout` after NODE is applied (it once went to the guest as the command's first word).
    result = cli("run", "alpha", "--timeout", "1", "sleep", "3")
    assert result.returncode == 124
    assert "`sleep 3` did not finish on alpha within 1 s" in result.stderr
    assert cli.ok("run", "alpha", "--fleet=micro", "--timeout=30", "echo", "on time") == "on time\n"
    # A refused option never reaches the guest; after `--` (or the first word) words are CMD's.
    assert cli("run", "alpha", "--bogus", "echo", "never-sent").returncode == 255
    assert "never-sent" not in cli.ok("logs", "alpha", "--transcript")
    assert cli.ok("run", "alpha", "--", "echo", "--timeout", "2") == "--timeout 2\n"
    assert cli.ok("run", "alpha", "echo", "--fleet", "x", "--", "y") == "--fleet x -- y\n"


def test_snapshot_and_restore_go_back_in_time(cli, micro):
    cli.ok("run", "beta", "echo before > /persist/before")
    assert "saved snapshot t1 of beta" in cli.ok("snapshot", "beta", "t1")
    cli.ok("run", "beta", "echo after > /persist/after; rm /persist/before")
    assert "restored beta to snapshot t1" in cli.ok("restore", "beta", "t1")
    assert cli.ok("run", "beta", "cat /persist/before") == "before\n"
    assert cli("run", "beta", "test -e /persist/after").returncode == 1
    # `up` took a pristine snapshot of every node.
    cli.ok("restore", "beta", "ndh-pristine")
    assert cli("run", "beta", "test -e /persist/before").returncode == 1


def test_restore_of_an_unknown_snapshot_names_the_existing_ones(cli, micro):
    result = cli("restore", "alpha", "nope")
    assert result.returncode == 1
    assert "node alpha has no snapshot 'nope' (snapshots: ndh-pristine" in result.stderr
    assert cli("snapshot", "alpha", "bad name").returncode == 1


def test_logs_show_the_serial_console_and_the_transcript(cli, micro):
    serial = cli.ok("logs", "alpha")
    assert "connecting to host..." in serial  # the backdoor's stderr on ttyS0
    cli("run", "alpha", "echo to-serial > /dev/ttyS0")
    assert cli.ok("logs", "alpha", "-n", "1") == "to-serial\n"
    transcript = cli.ok("logs", "alpha", "--transcript")
    assert "echo to-serial > /dev/ttyS0\n  -> 0 in" in transcript


def test_unknown_node_and_unknown_fleet_say_so(cli, micro):
    for args in (("run", "gamma", "true"), ("shell", "gamma"), ("logs", "gamma"), ("snapshot", "gamma", "x")):
        result = cli(*args)
        assert result.returncode == (255 if args[0] == "run" else 1)
        assert "fleet micro has no node 'gamma' (nodes: alpha, beta)" in result.stderr
    result = cli("run", "--fleet", "nosuch", "alpha", "true")
    assert result.returncode == 255
    assert "no fleet named 'nosuch'" in result.stderr and "(fleets: micro)" in result.stderr


def test_up_refuses_a_name_that_runs_already(cli, micro):
    result = cli("up", "--accel", cli.accel)
    assert result.returncode == 1
    assert "a fleet named micro exists already (running)" in result.stderr


def _spawn_shell(cli, node: str = "alpha") -> pexpect.spawn:
    shell = pexpect.spawn(
        str(DEPLOY_HARNESS), ["shell", node], env=cli.env, timeout=30, encoding="utf-8", dimensions=(24, 200),
        preexec_fn=as_from_a_terminal,  # its Ctrl-C tests must work under `nohup … &` too
    )
    shell.expect(rf"{node}:/tmp# ")
    return shell


def test_shell_runs_lines_shows_output_and_status_and_detaches(cli, micro):
    shell = _spawn_shell(cli)
    try:
        shell.sendline("cd /etc; echo made-in-shell > /tmp/shell-mark; echo answer-$((6*7))")
        shell.expect("answer-42")
        shell.expect(PROMPT)
        assert shell.match.group(1) == "/etc"  # `cd` carries over to the next line
        shell.sendline("pwd; ls /nonexistent")
        shell.expect(r"/etc\r\n")
        shell.expect(r"No such file or directory")  # stderr shows too
        shell.expect(r"\[exit status 1\]")
        shell.expect(PROMPT)
        shell.send("half a line")
        shell.send("\x1d")  # Ctrl-]
        shell.expect("detached from alpha; it keeps running")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0
    # The VM runs on, with what the shell did.
    assert cli.ok("run", "alpha", "cat /tmp/shell-mark") == "made-in-shell\n"


def test_ctrl_d_detaches_and_a_busy_node_refuses_a_second_client(cli, micro):
    shell = _spawn_shell(cli)
    try:
        result = cli("run", "alpha", "true")
        assert result.returncode == 255
        assert "node alpha is in use by deploy-harness shell alpha (pid" in result.stderr
        assert cli.ok("run", "beta", "echo free") == "free\n"  # other nodes are free
        shell.sendeof()
        shell.expect("detached from alpha")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert cli.ok("run", "alpha", "echo free again") == "free again\n"


def test_ctrl_c_cannot_stop_a_guest_command_and_a_second_one_detaches(cli, micro):
    shell = _spawn_shell(cli)
    try:
        shell.sendline("sleep 2; echo finished > /tmp/after-detach")
        time.sleep(0.5)
        shell.sendintr()
        shell.expect("the backdoor cannot interrupt a command in the guest")
        shell.sendintr()
        shell.expect("detaching; the command goes on running in the guest")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    # The next client waits for the command still running in the guest, then goes on.
    assert cli.ok("run", "alpha", "cat /tmp/after-detach") == "finished\n"


def test_shell_reads_lines_from_a_pipe(cli, micro):
    result = cli("shell", "beta", stdin="hostname\ncd /proc\npwd\nexit 4\n")
    assert result.stdout == "beta\n/proc\n"
    assert result.returncode == 4
