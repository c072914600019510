"""testinfra's commands run over the backdoor as testinfra's own backends run theirs: in a
`/bin/sh -c` of their own, without the driver's `set -euo pipefail`, with exit status, stdout
and stderr byte for byte as its `local://` backend gives them on the host. The driver's verbs
keep the driver's semantics. Real micro VMs (busybox sh), the host's /bin/sh for `local://`."""
import pytest
import testinfra

from support import HostShell
from engine_fleets import SOLO

# Commands whose answer does not depend on the host or on which sh runs them.
SAME_AS_LOCAL = [
    "false; echo after",
    "false | true",
    'echo "x${NDH_UNSET_X}y"',
    'seq 1 200000 | grep -q "^1"',  # SystemdService.exists' shape: seq dies of SIGPIPE, grep says 0
    "echo out && echo err >&2 && exit 42",
    "printf 'bad \\377\\376\\n' >&2; printf 'raw \\377'",
    "seq 1 3000 >&2",  # 13,893 bytes of stderr
    "printf no-newline >&2",
    "echo a; echo b >&2; echo c",
    "printf abc | md5sum; printf abc | sha256sum",
    'printf "%s\\n" "$0"',  # the shell is /bin/sh, as subprocess' shell=True runs it
    "case $- in *e*|*u*) echo strict ;; *) echo plain ;; esac",
    "read line; echo read=$?",
    "test -t 0 || test -t 1 || echo no-terminal",
    "exit 300",
    "printf ''",
]


def answer(result):
    return result.rc, result.stdout_bytes, result.stderr_bytes


@pytest.mark.fleet(SOLO)
def test_commands_answer_byte_for_byte_as_testinfras_local_backend(fleet):
    guest, local = fleet["solo"].testinfra, testinfra.get_host("local://")
    differences = {}
    for command in SAME_AS_LOCAL:
        if answer(guest.run(command)) != answer(local.run(command)):
            differences[command] = {"guest": answer(guest.run(command)), "local": answer(local.run(command))}
    assert differences == {}


@pytest.mark.fleet(SOLO)
def test_the_driver_verbs_keep_the_drivers_strict_mode(fleet):
    solo = fleet["solo"]
    for command in ("false; echo after", "false | true", 'echo "x${NDH_UNSET_X}y"'):
        assert solo.execute(command)[0] == 1, command
        assert solo.testinfra.run(command).rc == 0, command
    assert solo.execute('seq 1 200000 | grep -q "^1"')[0] == 141  # SIGPIPE under pipefail


@pytest.mark.fleet(SOLO)
def test_kill_of_its_own_shell_ends_the_command_not_the_backdoor(fleet):
    solo = fleet["solo"]
    killed = solo.testinfra.run("echo before; kill -TERM $$; echo after")
    # A shell killed by a signal: 128 + 15, as a shell reports it (local:// gives Python's -15).
    assert answer(killed) == (143, b"before\n", b"")
    assert solo.testinfra.check_output("echo next") == "next"
    assert solo.succeed("echo driver") == "driver\n"


@pytest.mark.fleet(SOLO)
def test_a_testinfra_command_is_not_the_backdoor_shell(fleet):
    solo = fleet["solo"]
    backdoor_pid = solo.succeed("echo $$").strip()  # a subshell's $$ is the backdoor shell's
    assert solo.testinfra.check_output("echo $$") != backdoor_pid
    assert solo.testinfra.check_output("cat /proc/$$/cmdline | tr '\\0' ' '").startswith("/bin/sh -c ")
    # The backdoor's traps (and their token) are not the command's.
    assert solo.testinfra.check_output("trap") == ""


@pytest.mark.fleet(SOLO)
def test_stderr_comes_back_whole_and_exact(fleet, tmp_path):
    solo = fleet["solo"]
    data = bytes(range(256)) * 64 + b"\xff\xfe no newline at the end"
    (tmp_path / "data.bin").write_bytes(data)
    solo.copy_from_host(tmp_path / "data.bin", "/tmp/data.bin")
    both = solo.testinfra.run("cat /tmp/data.bin; cat /tmp/data.bin >&2")
    assert answer(both) == (0, data, data)
    lines = solo.testinfra.run("seq 1 20000 >&2; exit 7")
    assert answer(lines) == (7, b"", "".join(f"{n}\n" for n in range(1, 20001)).encode())


@pytest.mark.fleet(SOLO)
def test_the_stderr_of_a_testinfra_command_is_kept_as_a_driver_commands(fleet):
    solo = fleet["solo"]
    solo.testinfra.run("echo testinfra-evidence >&2; false")
    assert solo.last_stderr() == "testinfra-evidence\n"
    assert "testinfra-evidence" in solo.serial_tail(10)  # copied to the serial log, as the driver's


def test_another_guest_shell_runs_testinfra_commands_in_sh_too():
    with HostShell("host") as shell:
        result = shell.testinfra.run("false; echo after; echo err >&2")
        assert answer(result) == (0, b"after\n", b"err\n")
        assert shell.execute("false; echo after")[0] == 1
