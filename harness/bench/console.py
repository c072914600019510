"""The bare console's floor for `python -m harness.bench` (micro image):

console_floor_true_ms      median of 200 x `true` sent over the backdoor console of the micro
                           start script, with no engine: the command, then `echo <mark>$?`, read
                           back until the mark and the status (the least framing that still
                           returns status and output); target: succeed_true_median_ms at most
                           1.5 x this
console_floor_subshell_ms  the same for `(true; true)`: `true; true` in a subshell of its own,
                           as the engine must run it (a command may `cd`, `exit` or set
                           variables; the NixOS test driver forks the same subshell); target:
                           succeed_subshell_median_ms at most 1.5 x this

Both floors are sampled in rounds that alternate with the engine's own samples of the same
commands (side_by_side), on a second guest running at the same time.

The start script is the one fleets run (harness/images/micro.py), started with the devices the
engine gives it (a virtconsole on a unix socket), but nothing of the engine reads the console.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from ..images import micro
from ..vm import process
from ..vm.backdoor import READY_LINE

SAMPLES = 200
MARK = b"\x02ndh-floor:"
STATUS = re.compile(re.escape(MARK) + rb"(\d+)\n")


class BareConsole:
    """The guest's backdoor shell on a plain socket."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.pending = b""

    def read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        while True:
            found = pattern.search(self.pending)
            if found:
                return found
            data = self.connection.recv(65536)
            if not data:
                raise RuntimeError("the bare console closed")
            self.pending += data

    def run(self, command: str) -> tuple[int, bytes]:
        self.connection.sendall(command.encode() + b"\necho \"" + MARK + b"$?\"\n")
        found = self.read_until(STATUS)
        output = self.pending[:found.start()]
        self.pending = self.pending[found.end():]
        return int(found.group(1)), output


ROUNDS = 5


@contextlib.contextmanager
def bare_console(image: micro.MicroImage, accel: str, workdir: Path) -> Iterator[BareConsole]:
    """A micro guest of its own whose backdoor console nothing of the engine reads."""
    node_dir = Path(tempfile.mkdtemp(prefix="floor-", dir=workdir))
    script = micro.write_start_script(node_dir, image, micro.MicroNode("floor", 1, ()))
    console_path = node_dir / "console"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(console_path))
    listener.listen(1)
    env = dict(
        os.environ, TMPDIR=str(node_dir), USE_TMPDIR="1", NIX_DISK_IMAGE=str(node_dir / "floor.qcow2"),
        QEMU_NET_OPTS="restrict=on",
        QEMU_OPTS=f"-chardev socket,id=shell,path={console_path} -device virtio-serial "
                  f"-device virtconsole,chardev=shell -serial null -display none -accel {accel} -no-reboot",
    )
    proc = process.spawn([str(script)], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener.settimeout(120)
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(60)
            console = BareConsole(connection)
            console.read_until(re.compile(re.escape(READY_LINE)))
            yield console
    finally:
        process.kill(proc)
        listener.close()


def floor_latencies(console: BareConsole, command: str, count: int) -> list[float]:
    console.run(command)  # warm
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        status, output = console.run(command)
        samples.append((time.perf_counter() - started) * 1000)
        if status != 0 or output:
            raise RuntimeError(f"`{command}` on the bare console gave {status}, {output!r}")
    return samples


def side_by_side(engine: Callable[[str, int], list[float]], console: BareConsole) -> dict[str, list[float]]:
    """SAMPLES of each command through the engine and over the bare console, in ROUNDS
    alternating rounds: the host's speed drifts by tens of percent within minutes, and a
    ratio of two figures taken minutes apart measured that drift as much as the engine."""
    pairs = (("succeed_true_ms", "console_floor_true_ms", "true", "true"),
             ("succeed_subshell_ms", "console_floor_subshell_ms", "true; true", "(true; true)"))
    samples: dict[str, list[float]] = {key: [] for pair in pairs for key in pair[:2]}
    for _ in range(ROUNDS):
        for engine_key, floor_key, command, bare_command in pairs:
            samples[engine_key] += engine(command, SAMPLES // ROUNDS)
            samples[floor_key] += floor_latencies(console, bare_command, SAMPLES // ROUNDS)
    return samples
