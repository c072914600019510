"""`deploy-harness run`, `shell`, `snapshot`, `restore`: one node of a kept fleet."""
from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from pathlib import Path
from typing import Iterator

from .. import keep
from ..keep.records import FleetRecord
from ..vm import CommandTimeout, Machine, MachineBroken, MachineError
from ..vm.backdoor import BackdoorShellExited, BackdoorTimeout
from . import node_trouble, shell_history
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_TIMEOUT, RUN_USAGE, SNAPSHOT_NAME, CliError


# -- commands on one node -------------------------------------------------------------------------


def _holder(args: argparse.Namespace) -> str:
    return f"deploy-harness {args.command} {args.node}"


@contextlib.contextmanager
def _attached(record: FleetRecord, args: argparse.Namespace, code: int, resync: bool = True) -> Iterator[Machine]:
    """keep.attached, with a backdoor that does not answer explained from the node's
    transcript (an ended shell, a command still running) and the restore that heals it."""
    with contextlib.ExitStack() as stack:
        try:
            machine = stack.enter_context(keep.attached(record, args.node, _holder(args), resync=resync))
        except MachineError as exc:
            if not isinstance(exc.__cause__, BackdoorTimeout):
                raise
            state_dir = record.node(args.node).state_dir
            raise CliError(node_trouble.cannot_attach(record.name, args.node, Path(state_dir), exc), code) from None
        yield machine


def cmd_run(args: argparse.Namespace) -> int:
    words = args.cmd
    if not words:
        raise CliError(f"run: no command given\nusage: {RUN_USAGE}", EXIT_RUN_ERROR)
    command = " ".join(words)  # as ssh does: the words form one shell command line
    record = keep.find(args.fleet)
    with _attached(record, args, EXIT_RUN_ERROR) as machine:
        # stdout and stderr apart: stderr goes to a guest file (the backdoor sends it to the
        # serial console otherwise), fetched by a second round trip.
        errors = f"/tmp/.ndh-stderr-{secrets.token_hex(6)}"
        try:
            status, output = machine.execute_bytes(run_wrapper(errors, command), timeout=args.timeout)
        except CommandTimeout:
            raise CliError(node_trouble.timed_out(record.name, args.node, command, args.timeout), EXIT_TIMEOUT) from None
        except MachineBroken as exc:
            if not isinstance(exc.__cause__, BackdoorShellExited):
                raise
            raise CliError(node_trouble.shell_ended(record.name, args.node, command, exc.__cause__),
                           EXIT_RUN_ERROR) from None
        except KeyboardInterrupt:
            machine.note(f"{shell_history.LEFT_RUNNING}{command}")
            raise CliError(node_trouble.interrupted(record.name, args.node, command), EXIT_INTERRUPTED) from None
        _, stderr = machine.execute_bytes(f"cat {errors} 2>/dev/null; rm -f {errors}", timeout=60)
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(stderr)
    sys.stderr.buffer.flush()
    return status


def run_wrapper(errors: str, command: str) -> str:
    """The backdoor command for `run` (shell_history strips the first line again for display)."""
    return f"exec 2>{errors}\n{command}"


def cmd_shell(args: argparse.Namespace) -> int:
    from ..vm.shell_session import BackdoorShell

    record = keep.find(args.fleet)
    again = f"{keep.env_prefix()}deploy-harness shell {args.node} --fleet {record.name}"
    with _attached(record, args, EXIT_ERROR) as machine:
        shell = BackdoorShell(machine, record.name, again)
        try:
            if sys.stdin.isatty():
                return shell.interactive(history=machine.state_dir / "shell_history")
            return shell.script(sys.stdin)
        except MachineBroken as exc:
            if not isinstance(exc.__cause__, BackdoorShellExited):
                raise
            ended = shell_history.read(machine.transcript_path).ended
            line = ended.command if ended is not None else "a command"
            raise CliError(node_trouble.shell_ended(record.name, args.node, line, exc.__cause__)) from None


def _snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME.fullmatch(name):
        raise CliError(f"snapshot name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return name


def cmd_snapshot(args: argparse.Namespace) -> int:
    name = _snapshot_name(args.name)
    record = keep.find(args.fleet)
    with _attached(record, args, EXIT_ERROR) as machine:
        machine.snapshot(name)
    print(f"saved snapshot {name} of {args.node} (memory, devices and disk)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    name = _snapshot_name(args.name)
    record = keep.find(args.fleet)
    # No resync first: restoring also heals a shell stuck in an earlier session's command.
    with _attached(record, args, EXIT_ERROR, resync=False) as machine:
        existing = _snapshot_names(machine.send_monitor_command("info snapshots"))
        if name not in existing:
            raise CliError(
                f"node {args.node} has no snapshot {name!r} (snapshots: {', '.join(existing) or 'none'})"
            )
        machine.restore(name)
    print(f"restored {args.node} to snapshot {name}")
    return 0


def _snapshot_names(info: str) -> list[str]:
    """Tags from HMP `info snapshots`: after the header row `ID TAG VM SIZE ...`, one row per
    snapshot whose ID is a number, or `--` when the snapshot is on all disks (QEMU 7.2)."""
    names = []
    for line in info.splitlines():
        fields = line.split()
        if len(fields) >= 2 and (fields[0].isdigit() or fields[0] == "--"):
            names.append(fields[1])
    return names
