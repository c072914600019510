"""`deploy-harness run`, `shell`, `snapshot`, `restore`: one node of a kept fleet (`restore --all`:
every node, fleet_restore.py)."""
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
from . import checkpoint_report, node_trouble, shell_history, snapshot_names
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_TIMEOUT, RUN_USAGE, CliError
from .fleet_restore import restore_all


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


def cmd_snapshot(args: argparse.Namespace) -> int:
    name = snapshot_names.check(args.name)
    record = keep.find(args.fleet)
    if name in checkpoint_report.kept(record):
        raise CliError(
            f"{name!r} is a checkpoint of fleet {record.name}: a snapshot of {args.node} under its "
            "name would replace that node's part of it. Pick another name."
        )
    with _attached(record, args, EXIT_ERROR) as machine:
        machine.snapshot(name)
    print(f"saved snapshot {name} of {args.node} (memory, devices and disk)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """`restore NODE NAME`: one node; `restore --all NAME`: every node at one moment."""
    name = snapshot_names.check(args.name)
    if args.all and args.node is not None:
        raise CliError(f"restore --all takes NAME only, not a node ({args.node!r}): `restore --all {name}`")
    if not args.all and args.node is None:
        raise CliError(f"restore needs a node: `restore NODE {name}`, or `restore --all {name}` for every node")
    record = keep.find(args.fleet)
    if args.all:
        print(restore_all(record, name))
        return 0
    kept = checkpoint_report.kept(record)
    # No resync first: restoring also heals a shell stuck in an earlier session's command.
    with _attached(record, args, EXIT_ERROR, resync=False) as machine:
        existing = snapshot_names.on_node(machine)
        if name not in existing:
            raise CliError(
                f"node {args.node} has no snapshot {name!r} (snapshots: {', '.join(existing) or 'none'}; "
                f"checkpoints of fleet {record.name}, on every node: {checkpoint_report.names(record)})"
            )
        machine.restore(name)
    if name in kept:
        print(f"restored {args.node} to snapshot {name}, its part of checkpoint {name}; the other "
              f"nodes stay where they are (`restore --all {name}` restores every node)")
    else:
        print(f"restored {args.node} to snapshot {name}")
    return 0
