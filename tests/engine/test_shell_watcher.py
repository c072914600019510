"""The host side of the backdoor shell's watcher (harness/vm/shell_watcher.py), on a serial log
file written as QEMU writes it; the guest side runs in test_faults.py (a SIGKILLed shell)."""
from __future__ import annotations

import subprocess

from harness.vm import shell_watcher
from harness.vm.shell_watcher import GoneOnSerial


def watcher_line(token: str) -> bytes:
    """The line the guest's watcher writes, produced by running its own shell code."""
    # The shell (bash -c) starts its watcher and ends: the watcher speaks on their stderr.
    done = subprocess.run(["bash", "-c", shell_watcher.start_line(token) + "true"], capture_output=True, timeout=30)
    return done.stderr


def test_the_watcher_speaks_when_its_shell_dies_and_names_the_machine_s_tag(tmp_path):
    line = watcher_line("token-a")
    assert line.startswith(f"{shell_watcher.MARK}:{shell_watcher.tag('token-a')}:".encode()), line
    assert b"token-a" not in line, "the token itself stays out of the serial log"


def test_only_a_line_after_the_mark_and_of_this_machine_counts(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"boot\n" + watcher_line("token-a") + b"more\n")  # an earlier shell's death
    watch = GoneOnSerial(log, "token-a")
    watch.mark()
    assert not watch.seen()
    with open(log, "ab") as serial:
        serial.write(b"x" * 300_000 + watcher_line("token-b"))  # another machine's token
    assert not watch.seen()
    with open(log, "ab") as serial:
        serial.write(b"noise " * 50_000 + watcher_line("token-a")[:20])
    assert not watch.seen()  # half a line so far
    with open(log, "ab") as serial:
        serial.write(watcher_line("token-a")[20:])
    assert watch.seen()
