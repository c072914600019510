"""The backdoor's output relay and its short frames (harness/vm/shell_framing.py), on real
micro VMs: a command that kills the relay still gets its answer and the next one works; a
command that leaves a process running with its stdout answers at once; a restored snapshot
whose shell lacks the framing functions (another harness version's) answers, and one whose relay
cannot start says so; positional parameters and shell state stay out of commands."""
import time

import pytest

from harness.fleet import FleetSpec, NodeSpec
from harness.vm import MachineBroken
from harness.vm.shell_framing import RELAY_FIFO

SOLO = FleetSpec("relay", {"solo": NodeSpec(vlans=())})


@pytest.mark.fleet(SOLO)
def test_a_command_that_kills_the_relay_is_answered_and_the_next_one_too(fleet):
    solo = fleet["solo"]
    old_relay = solo.succeed("echo $__ndh_r").strip()
    status, _ = solo.execute("kill -9 $__ndh_r; sleep 0.2; echo lost", timeout=30)
    assert status == 141  # its write to the dead relay: SIGPIPE, as any pipe's writer
    assert solo.succeed("echo after", timeout=30) == "after\n"
    assert solo.succeed("echo $__ndh_r").strip() != old_relay
    assert solo.succeed("seq 1 3") == "1\n2\n3\n"


@pytest.mark.fleet(SOLO)
def test_a_process_left_running_with_the_commands_stdout_does_not_hold_the_answer(fleet):
    solo = fleet["solo"]
    started = time.monotonic()
    solo.succeed("sleep 60 &", timeout=30)
    assert time.monotonic() - started < 20
    assert solo.succeed("echo next") == "next\n"


@pytest.mark.fleet(SOLO)
def test_a_restored_shell_without_the_framing_functions_answers(fleet):
    solo = fleet["solo"]
    backdoor = solo._backdoor
    # As a snapshot taken by another version of the harness would hold: no __ndh_f.
    backdoor.send_raw("unset -f __ndh_f __ndh_end __ndh_sh")
    solo.snapshot("without-functions")
    solo.restore("without-functions")
    assert solo.succeed("echo restored; echo err >&2") == "restored\n"
    assert solo.execute_sh("echo out; echo err >&2") == (0, b"out\n", b"err\n")


@pytest.mark.fleet(SOLO)
def test_a_restored_shell_of_an_older_version_leaves_commands_no_extra_fd(fleet):
    solo = fleet["solo"]
    # Earlier versions opened /dev/null on an fd of their own and moved it onto each command.
    solo._backdoor.send_raw("exec {__ndh_n}</dev/null")
    assert solo.succeed("readlink /proc/$$/fd/$__ndh_n") == "/dev/null\n", "the shell holds it"
    solo.snapshot("older-version")
    solo.restore("older-version")
    fds = solo.succeed("ls /proc/self/fd | sort -n | tr '\\n' ' '").split()
    assert fds[:3] == ["0", "1", "2"] and len(fds) == 4, fds
    assert solo.succeed("readlink /proc/self/fd/0") == "/dev/null\n"


@pytest.mark.fleet(SOLO)
def test_commands_see_no_positional_parameters_and_hold_no_framing_fds(fleet):
    solo = fleet["solo"]
    assert solo.succeed('echo "$#:$*"') == "0:\n"
    fds = solo.succeed("ls /proc/self/fd | sort -n | tr '\\n' ' '").split()
    assert fds[:3] == ["0", "1", "2"] and len(fds) == 4  # and ls's own directory fd
    assert solo.succeed("readlink /proc/self/fd/1") == f"{RELAY_FIFO}\n"


@pytest.mark.fleet(SOLO)
def test_a_fast_builtins_stderr_goes_to_the_serial_console_not_to_the_error(fleet):
    solo = fleet["solo"]
    solo.fail("echo earlier-stderr >&2; false")
    status, _ = solo.execute("[ 1 -eq x ]")
    assert status == 2
    assert solo.last_stderr() == ""  # not the earlier command's
    assert "integer expression expected" in solo.evidence_tail()


@pytest.mark.fleet(SOLO)
def test_a_relay_that_cannot_start_fails_saying_so(fleet):
    solo = fleet["solo"]
    solo.succeed('rm "$(command -v mkfifo)"')
    # As a shell set up before the relay existed: the next setup (a restore's) starts one.
    solo._backdoor.send_raw("unset __ndh_o")
    solo.succeed("true")  # a builtin: answered without the relay
    solo.snapshot("no-mkfifo")
    with pytest.raises(MachineBroken, match=r"after restoring no-mkfifo: the backdoor shell could not start its "
                                            r"output relay /run/\.ndh-relay \(status 127; mkfifo and cat"):
        solo.restore("no-mkfifo")
