"""What a node's command transcript says about its backdoor shell now.

Every process that drives a node appends to its transcript (harness.vm.console.Transcript):
`[HH:MM:SS] $ COMMAND` (possibly several lines), then `  -> STATUS in N ms, M bytes`, and
notes `[HH:MM:SS] # TEXT`. A STATUS that is a number is a command that ran; the engine writes
`BACKDOOR SHELL EXITED [status]`, `NO BACKDOOR SHELL`, `TIMEOUT`, `GUEST REBOOTED` and
`QEMU EXITED` for the others, and notes `starting …`, `restored …` and `reboot …` when the
guest gets a new shell. `deploy-harness run` notes `left running: COMMAND` when it is
interrupted. From these: has the shell ended (and no new one came since), or is it still
busy with an earlier command?"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LEFT_RUNNING = "left running: "
_HEADER = re.compile(r"\[(\d\d:\d\d:\d\d)\] ([#$]) (.*)")
_RESULT = re.compile(r"  -> (.+?) in [\d.]+ ms, \d+ bytes")
_ENDED = re.compile(r"BACKDOOR SHELL EXITED(?: (\d+))?")
_NEW_SHELL_NOTES = ("starting ", "restored ", "reboot")
# What deploy-harness wraps around a command (node_commands.run_wrapper, shell_session.wrap).
_RUN_PREFIX = re.compile(r"exec 2>/tmp/\.ndh-stderr-[0-9a-f]+\n")
_SHELL_PREFIX = "set +euo pipefail; cd -- "
_TAIL_BYTES = 1 << 20  # what came before is history: the shell answered since


@dataclass(frozen=True)
class Event:
    time: str  # HH:MM:SS, the transcript's clock
    command: str  # as the person typed it (deploy-harness's wrappers removed)
    status: int | None = None


@dataclass(frozen=True)
class ShellState:
    ended: Event | None = None  # the command during which the shell ended, if none came since
    busy: Event | None = None  # the first command that has not finished, if none finished since


def read(path: Path) -> ShellState:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - _TAIL_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ShellState()
    return parse(text)


def parse(text: str) -> ShellState:
    ended = busy = None
    command: list[str] | None = None
    started = ""
    for line in text.splitlines():
        header = _HEADER.fullmatch(line)
        if header:
            time, kind, rest = header.groups()
            command = None
            if kind == "$":
                command, started = [rest], time
            elif rest.startswith(_NEW_SHELL_NOTES):
                ended = busy = None
            elif rest.startswith(LEFT_RUNNING) and ended is None:
                busy = busy or Event(time, rest[len(LEFT_RUNNING):])
            continue
        result = _RESULT.match(line) if command is not None else None
        if result is None:
            if command is not None:
                command.append(line)
            continue
        status, event = result.group(1), Event(started, shown("\n".join(command)))
        command = None
        gone = _ENDED.fullmatch(status)
        if gone:
            ended, busy = Event(event.time, event.command, int(gone.group(1)) if gone.group(1) else None), None
        elif status == "TIMEOUT":
            busy = busy or event
        elif status != "NO BACKDOOR SHELL":  # a command ran, a new shell came, or QEMU is gone
            ended = busy = None
    return ShellState(ended, busy)


def shown(command: str) -> str:
    """The command as the person gave it to `run` or typed it into `shell`."""
    bare = _RUN_PREFIX.sub("", command, count=1) if _RUN_PREFIX.match(command) else command
    if bare.startswith(_SHELL_PREFIX):
        lines = bare.split("\n")
        bare = "\n".join(lines[2:-1]) or bare
    return bare
