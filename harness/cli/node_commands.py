"""`deploy-harness run`, `shell`, `snapshot`, `restore`: one node of a kept fleet."""
from __future__ import annotations

import argparse
import secrets
import sys

from .. import keep
from ..vm import CommandTimeout
from .errors import EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_TIMEOUT, RUN_USAGE, SNAPSHOT_NAME, CliError


# -- commands on one node -------------------------------------------------------------------------


def _holder(args: argparse.Namespace) -> str:
    return f"deploy-harness {args.command} {args.node}"


def cmd_run(args: argparse.Namespace) -> int:
    words = _options_after_node(args)
    if not words:
        raise CliError(f"run: no command given\nusage: {RUN_USAGE}", EXIT_RUN_ERROR)
    command = " ".join(words)  # as ssh does: the words form one shell command line
    record = keep.find(args.fleet)
    with keep.attached(record, args.node, _holder(args)) as machine:
        # stdout and stderr apart: stderr goes to a guest file (the backdoor sends it to the
        # serial console otherwise), fetched by a second round trip.
        errors = f"/tmp/.ndh-stderr-{secrets.token_hex(6)}"
        try:
            status, output = machine.execute_bytes(f"exec 2>{errors}\n{command}", timeout=args.timeout)
        except CommandTimeout:
            raise CliError(
                f"`{command}` did not finish on {args.node} within {args.timeout} s; it goes on "
                "running in the guest (the next command on the node waits for it, or restore a snapshot)",
                EXIT_TIMEOUT,
            ) from None
        except KeyboardInterrupt:
            raise CliError(
                f"interrupted: `{command}` goes on running on {args.node} (the backdoor cannot "
                "signal it); the next command on the node waits for it",
                EXIT_INTERRUPTED,
            ) from None
        _, stderr = machine.execute_bytes(f"cat {errors} 2>/dev/null; rm -f {errors}", timeout=60)
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(stderr)
    sys.stderr.buffer.flush()
    return status


def _options_after_node(args: argparse.Namespace) -> list[str]:
    """Parse the options between NODE and the command (or a `--`) into `args`; return the
    command's words. Options there are deploy-harness's or refused: never sent to the guest."""
    words, options = list(args.cmd), []
    while words and words[0].startswith("-"):
        word = words.pop(0)
        if word == "--":
            break
        options.append(word)
        if word in ("--fleet", "--timeout") and words:  # options that take a separate value
            options.append(words.pop(0))
    parser = _RunOptions(prog="deploy-harness run", add_help=False)
    parser.add_argument("--fleet", metavar="NAME", default=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS")
    parser.parse_args(options, namespace=args)
    return words


class _RunOptions(argparse.ArgumentParser):
    def error(self, message: str):  # no exit 2: `run`'s own errors exit 255, the rest is CMD's
        hint = " (a command that starts with '-' goes after `--`)" if "unrecognized" in message else ""
        raise CliError(f"run: {message}{hint}\nusage: {RUN_USAGE}", EXIT_RUN_ERROR)


def cmd_shell(args: argparse.Namespace) -> int:
    from ..vm.shell_session import BackdoorShell

    record = keep.find(args.fleet)
    again = f"{keep.env_prefix()}deploy-harness shell {args.node} --fleet {record.name}"
    with keep.attached(record, args.node, _holder(args)) as machine:
        shell = BackdoorShell(machine, record.name, again)
        if sys.stdin.isatty():
            return shell.interactive(history=machine.state_dir / "shell_history")
        return shell.script(sys.stdin)


def _snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME.fullmatch(name):
        raise CliError(f"snapshot name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return name


def cmd_snapshot(args: argparse.Namespace) -> int:
    name = _snapshot_name(args.name)
    record = keep.find(args.fleet)
    with keep.attached(record, args.node, _holder(args)) as machine:
        machine.snapshot(name)
    print(f"saved snapshot {name} of {args.node} (memory, devices and disk)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    name = _snapshot_name(args.name)
    record = keep.find(args.fleet)
    # No resync first: restoring also heals a shell stuck in an earlier session's command.
    with keep.attached(record, args.node, _holder(args), resync=False) as machine:
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
