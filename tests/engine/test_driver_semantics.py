"""Commands run as the NixOS test driver runs them (`set -euo pipefail`, a subshell, stdin from
/dev/null), their failures carry their own stderr and the serial tail, and the framing's edges
hold. Real micro VMs."""
import pytest

from harness.vm import CommandFailed, MachineDied, WaitTimeout
from engine_fleets import PAIR, SOLO

# command -> exit status under the driver's `set -euo pipefail`
SEMANTICS = {
    "false; true": 1,
    "false | true": 1,
    "echo $UNSET_X": 1,
    "true": 0,
    "x=1; echo $x >/dev/null": 0,
    "false || true": 0,
    "if false; then :; fi": 0,
}


@pytest.mark.fleet(PAIR)
@pytest.mark.parametrize("command", sorted(SEMANTICS))
def test_strict_mode_as_the_driver(fleet, command):
    status, _ = fleet["alpha"].execute(command)
    assert status == SEMANTICS[command]


@pytest.mark.fleet(PAIR)
def test_cd_and_variables_never_leak_into_the_backdoor_shell(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("cd /etc; export NDH_LEAK=1; NDH_OTHER=2; set +e")
    assert alpha.succeed("pwd") == "/tmp\n"
    assert alpha.succeed("echo ${NDH_LEAK:-unset} ${NDH_OTHER:-unset}") == "unset unset\n"
    assert alpha.execute("false; true")[0] == 1, "set +e of an earlier command leaked"


@pytest.mark.fleet(PAIR)
def test_check_return_false_gives_minus_one_as_the_driver(fleet):
    assert fleet["alpha"].execute("echo hi; exit 3", check_return=False) == (-1, "hi\n")


@pytest.mark.fleet(PAIR)
def test_a_failed_command_shows_its_own_stderr_and_the_serial_tail(fleet):
    alpha = fleet["alpha"]
    alpha.succeed("echo unrelated-noise >&2")
    with pytest.raises(CommandFailed) as failed:
        alpha.succeed("echo partial; ls /does-not-exist")
    error = failed.value
    assert error.status == 1 and error.output == "partial\n"
    assert "/does-not-exist" in error.stderr and "unrelated-noise" not in error.stderr
    assert "--- the command's stderr ---" in str(error)
    assert "--- last serial console lines ---" in str(error)
    # The driver's users read stderr in the serial log: it is copied there after the command.
    assert "/does-not-exist" in alpha.serial_tail(10)


@pytest.mark.fleet(PAIR)
def test_fail_and_waits_carry_stderr_too(fleet):
    alpha = fleet["alpha"]
    with pytest.raises(CommandFailed) as failed:
        alpha.fail("echo oops >&2; true")
    assert "oops" in failed.value.stderr
    with pytest.raises(WaitTimeout) as waited:
        alpha.wait_until_succeeds("echo still-missing >&2; test -e /nonexistent-file", timeout=2)
    assert "still-missing" in waited.value.stderr
    assert isinstance(waited.value, CommandFailed), "the exception types stay as they were"


@pytest.mark.fleet(PAIR)
def test_a_command_starting_with_a_dash_runs_as_written(fleet):
    status, out = fleet["alpha"].execute("--version 2>/dev/null || echo status=$?")
    assert (status, out) == (0, "status=127\n")


@pytest.mark.fleet(PAIR)
def test_a_nul_byte_is_refused_before_anything_is_sent(fleet):
    with pytest.raises(ValueError, match="NUL byte"):
        fleet["alpha"].execute("echo a\0b")
    assert fleet["alpha"].succeed("echo ok") == "ok\n"


@pytest.mark.fleet(PAIR)
@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"no newline at the end" * 5000])
def test_every_byte_value_and_a_long_last_line_come_back_exactly(fleet, tmp_path, data):
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    alpha = fleet["alpha"]
    alpha.copy_from_host(source, "/tmp/data.bin")
    status, out = alpha.execute_bytes("cat /tmp/data.bin")
    assert status == 0 and out == data


@pytest.mark.fleet(SOLO)
def test_qemu_that_died_between_commands_is_reported_with_the_serial_tail(fleet):
    solo = fleet["solo"]
    solo.succeed("echo before-the-end > /dev/ttyS0")
    solo.send_monitor_command("quit")
    solo.process.wait(30)
    with pytest.raises(MachineDied) as died:
        solo.succeed("true")
    assert "QEMU has exited" in str(died.value) and "since the last command" in str(died.value)
    assert "before-the-end" in died.value.serial_tail
