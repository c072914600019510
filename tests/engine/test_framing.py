"""The backdoor framing against a real guest: bytes, size, quoting, status, isolation."""
import pytest

from harness.vm.backdoor import runs_without_subshell
from harness.vm.shell_framing import ansi_c_quote
from engine_fleets import PAIR


@pytest.mark.parametrize(
    "command",
    ["true", "false", ":", "test -e /etc/hosts", "[ -f '/persist/a b' ]", "echo ok", "pwd",
     "printf %s x"],
)
def test_read_only_builtins_skip_the_subshell(command):
    assert runs_without_subshell(command)


@pytest.mark.parametrize(
    "command",
    ["cd /", "exit 3", "x=1", "true; cd /", "echo $HOME", "echo `id`", "echo a > /tmp/f",
     "printf -v x %s y", "echo 'unbalanced", "test -e a#b", "set -e", "export A=1",
     "true\ncd /", "echo \"q\"", "ls", "read x", "echo *"],
)
def test_anything_else_takes_the_subshell(command):
    assert not runs_without_subshell(command)


def test_ansi_c_quote_round_trips_through_bash():
    import subprocess

    text = "a'b\"c\\d$e`f\n\t\x01\x7f é ${x} $(id)"
    out = subprocess.run(["bash", "-c", f"printf %s {ansi_c_quote(text)}"], capture_output=True)
    assert out.stdout.decode() == text


@pytest.mark.fleet(PAIR)
def test_every_byte_value_survives(fleet):
    alpha = fleet["alpha"]
    status, out = alpha.execute_bytes("printf \"$(printf '\\\\%03o' $(seq 0 255))\"")
    assert status == 0
    assert out == bytes(range(256))


@pytest.mark.fleet(PAIR)
def test_ten_megabytes_of_output(fleet):
    status, out = fleet["alpha"].execute_bytes("head -c 10000000 /dev/urandom | tee /tmp/r | wc -c >/dev/null; cat /tmp/r")
    assert status == 0 and len(out) == 10_000_000
    digest = fleet["alpha"].succeed("sha256sum /tmp/r").split()[0]
    import hashlib
    assert hashlib.sha256(out).hexdigest() == digest


@pytest.mark.fleet(PAIR)
def test_quotes_heredocs_and_multiline_scripts(fleet):
    alpha = fleet["alpha"]
    assert alpha.succeed("echo \"double 'single' $((1+2))\"") == "double 'single' 3\n"
    assert alpha.succeed("cat <<'EOF'\n$literal `x` \\n\nEOF") == "$literal `x` \\n\n"
    assert alpha.succeed("for i in 1 2\ndo\n  echo $i\ndone") == "1\n2\n"


@pytest.mark.fleet(PAIR)
def test_exit_status_and_stderr_routing(fleet):
    alpha = fleet["alpha"]
    assert alpha.execute("echo out; echo err >&2; exit 42") == (42, "out\n")
    assert alpha.execute("false")[0] == 1
    # An unbalanced quote is a syntax error inside eval, never a shell waiting for more input.
    status, _ = alpha.execute("echo 'unbalanced")
    assert status != 0
    assert alpha.succeed("echo still fine") == "still fine\n"


@pytest.mark.fleet(PAIR)
def test_commands_cannot_change_the_backdoor_shell(fleet):
    alpha = fleet["alpha"]
    alpha.execute("cd /; export LEAK=1; set -e; exit 7")
    alpha.execute("set -e; false")
    assert alpha.succeed("pwd; echo ${LEAK:-unset}") == "/tmp\nunset\n"


@pytest.mark.fleet(PAIR)
def test_output_that_looks_like_a_trailer_is_output(fleet):
    alpha = fleet["alpha"]
    fake = "\x1edeadbeef0000:1:0\n"
    assert alpha.succeed(f"printf {ansi_c_quote(fake)}") == fake


@pytest.mark.fleet(PAIR)
def test_commands_get_no_stdin(fleet):
    # stdin is /dev/null: a command reading it must not swallow the next command.
    assert fleet["alpha"].execute("cat; echo done") == (0, "done\n")
    assert fleet["alpha"].succeed("echo next") == "next\n"
