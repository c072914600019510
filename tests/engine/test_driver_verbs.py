"""The NixOS test driver's verbs that VM tests are ported with: real micro VMs where the micro
image can show the effect, a recording shell where only the command text matters."""
import builtins

import pytest

from harness.vm import GuestShell, WaitTimeout, keys
from engine_fleets import PAIR, SOLO


class RecordingShell(GuestShell):
    name = "recorder"

    def __init__(self) -> None:
        self.commands = []

    def execute_bytes(self, command, timeout=None):
        self.commands.append(command)
        return 0, b"ActiveState=active\nId=x.service\n"


def test_systemctl_runs_as_the_driver_runs_it_for_root_and_for_a_user():
    shell = RecordingShell()
    shell.systemctl("list-jobs --no-pager")
    shell.systemctl("start 'x.service'", user="alice")
    assert shell.commands == [
        "systemctl list-jobs --no-pager",
        "su -l alice --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user start \\'x.service\\''",
    ]
    assert shell.get_unit_info("x.service", user="alice") == {"ActiveState": "active", "Id": "x.service"}


@pytest.mark.parametrize("key, codes", [
    ("a", ["a"]), ("A", ["shift", "a"]), ("7", ["7"]), ("\n", ["ret"]), (" ", ["spc"]),
    ("?", ["shift", "slash"]), ("_", ["shift", "minus"]), ("ctrl-alt-delete", ["ctrl", "alt", "delete"]),
])
def test_characters_become_qemu_key_codes(key, codes):
    assert keys.qcodes(key) == codes


def test_a_character_without_a_key_is_refused():
    with pytest.raises(ValueError, match="no key"):
        keys.qcodes("é")


@pytest.mark.fleet(PAIR)
def test_send_chars_reaches_qemu(fleet):
    fleet["alpha"].send_chars("root\n", delay=None)  # QEMU accepts every key event


@pytest.mark.fleet(PAIR)
def test_copy_from_machine_brings_a_directory_to_the_host(fleet, tmp_path):
    fleet["alpha"].succeed("mkdir -p /tmp/out/sub; echo one > /tmp/out/a; printf '\\001\\377' > /tmp/out/sub/b")
    copied = fleet["alpha"].copy_from_machine("/tmp/out", tmp_path / "here")
    assert copied == tmp_path / "here" / "out"
    assert (copied / "a").read_text() == "one\n" and (copied / "sub" / "b").read_bytes() == b"\x01\xff"


@pytest.mark.fleet(PAIR)
def test_get_console_log_holds_what_the_serial_console_printed(fleet):
    fleet["beta"].succeed("echo console-log-marker > /dev/ttyS0")
    fleet["beta"].wait_for_console_text("console-log-marker", timeout=30)
    assert "console-log-marker" in fleet["beta"].get_console_log()


@pytest.mark.fleet(SOLO)
def test_wait_for_shutdown_returns_when_the_guest_powers_off(fleet):
    solo = fleet["solo"]
    with pytest.raises(WaitTimeout):
        solo.wait_for_shutdown(timeout=1)
    solo.execute("(sleep 1; poweroff) >/dev/null 2>&1 &")
    solo.wait_for_shutdown(timeout=120)
    assert not solo.booted


@pytest.mark.fleet(PAIR)
def test_shell_interact_runs_typed_lines_until_end_of_input(fleet, monkeypatch, capfdbinary):
    typed = iter(["echo typed-in-the-shell", "cd /etc", "pwd"])

    def fake_input(prompt=""):
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)
    assert fleet["alpha"].shell_interact() == 0
    out = capfdbinary.readouterr().out
    assert b"typed-in-the-shell\n" in out and b"/etc\n" in out
