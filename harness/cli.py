"""`deploy-harness`: keep a fleet of VMs running in the background and work on it by hand.

    deploy-harness up [--spec micro|FILE.json|FILE.py:NAME] [--name NAME]
    deploy-harness status
    deploy-harness shell NODE            # Ctrl-] detaches, the VM keeps running
    deploy-harness run NODE CMD...       # exits with CMD's status
    deploy-harness snapshot NODE NAME / restore NODE NAME
    deploy-harness logs NODE [-f]
    deploy-harness down

Fleets live in `$NDH_FLEETS_DIR`, else `$XDG_RUNTIME_DIR/nixos-deploy-harness`, else
`/tmp/ndh-<uid>`, one directory per fleet name (see harness/keep/). Every command
but `up` takes `--fleet NAME`, needed only when several fleets exist.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import secrets
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

import psutil

from . import accel as accel_mod
from . import state_dirs
from . import fleet_specs, keep
from .boot_progress import BootProgress
from .fleet import PRISTINE, Fleet
from .keep import FleetStateError
from .vm import CommandTimeout, MachineError
from .vm import console

EXIT_ERROR = 1  # the harness could not do what was asked (message on stderr)
EXIT_RUN_ERROR = 255  # the same for `run`, whose 1 belongs to the command (as ssh does)
EXIT_TIMEOUT = 124  # `run --timeout` ran out (as timeout(1) does)
EXIT_INTERRUPTED = 130
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RUN_USAGE = "deploy-harness run NODE [--fleet NAME] [--timeout SECONDS] [--] CMD..."


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # SIGTERM and SIGHUP (a closed terminal, a cancelled job) clean up as Ctrl-C does.
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _interrupted)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ndeploy-harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except (FleetStateError, fleet_specs.SpecError, MachineError) as exc:
        return _fail(str(exc), EXIT_RUN_ERROR if args.command == "run" else EXIT_ERROR)
    except Exception as exc:  # a bug: say so in one line; the traceback on request
        if os.environ.get("NDH_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set NDH_DEBUG=1 for the traceback)",
            EXIT_RUN_ERROR if args.command == "run" else EXIT_ERROR,
        )


def _interrupted(number: int, _frame) -> None:
    signal.signal(number, signal.SIG_DFL)
    raise KeyboardInterrupt(signal.Signals(number).name)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _fail(message: str, code: int) -> int:
    print(f"deploy-harness: {message}", file=sys.stderr)
    return code


# -- up -------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    spec = fleet_specs.load(args.spec)
    name = keep.check_name(args.name or keep.dir_name_for(spec.name))
    if name != spec.name:
        spec = dataclasses.replace(spec, name=name)
    try:
        choice = accel_mod.resolve(args.accel)
    except Exception as exc:
        raise CliError(f"cannot choose an accelerator: {exc}") from exc
    print(f"accelerator: {choice.name} ({choice.reason})", flush=True)
    directory = keep.claim(name, origin="deploy-harness up")
    progress = BootProgress(directory, sorted(spec.nodes))
    fleet = Fleet(
        spec, accel=choice.name, base_dir=directory, keep=True,
        boot_timeout=args.boot_timeout, progress=progress.say,
    )
    try:
        try:
            with progress:
                fleet.boot()
        except Exception as exc:  # the image or the VMs: a message for the user, not a bug
            raise CliError(f"fleet {name} did not boot: {type(exc).__name__}: {exc}") from exc
        try:
            fleet.snapshot(PRISTINE)
            # Nodes QEMU cannot snapshot (9p shares, docs/nixos-facts.md) are listed, not fatal.
            refused = getattr(fleet, "cold_boot", {})
            pristine = f"snapshot {PRISTINE} of every node taken: `restore NODE {PRISTINE}` goes back to it"
            if refused:
                pristine = f"no {PRISTINE} snapshot of " + "; ".join(f"{n} ({why})" for n, why in sorted(refused.items()))
        except MachineError as exc:
            pristine = f"no {PRISTINE} snapshot: {str(exc).splitlines()[0]}"
        kept = keep.KeptFleet(fleet, origin="deploy-harness up")
        kept.let_go()
    except BaseException:
        keep.stop_fleet(directory)  # also the VLAN switches, which run as daemons
        raise
    print(pristine)
    print("\n".join(keep.how_to_attach(name, spec.nodes, directory)))
    return 0


# -- status, logs, down ---------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    records = [keep.find(args.fleet)] if args.fleet else keep.all_fleets()
    if not records:
        print(f"no fleet is running (none in {keep.fleets_root()}); start one with `deploy-harness up`")
        return EXIT_ERROR
    any_running = False
    for record in records:
        health = record.health()
        any_running |= health.usable
        detail = f": {health.detail}" if health.detail else ""
        print(f"fleet {record.name}: {health.state}{detail}")
        print(f"  state {record.directory}" + (f"; started by {record.origin}" if record.origin else ""))
        if record.last_test:
            print(f"  left as test {record.last_test} finished with it")
        for node in record.nodes.values():
            ports = ", ".join(f"127.0.0.1:{host}->{guest}" for guest, host in node.forwards)
            vlans = ",".join(str(v) for v in sorted(node.vlans)) or "none"
            print(
                f"  node {node.name:<12} {'running' if node.running else 'stopped':<8} "
                f"pid {node.pid}  vlans {vlans}" + (f"  ports {ports}" if ports else "")
            )
        for switch in record.switches:
            print(f"  vlan {switch.vlan:<12} {'running' if switch.running else 'stopped':<8} pid {switch.pid} (vde_switch)")
        if health.state == "stale":
            # An interrupted boot's processes are in no record: find them by their command lines.
            for pid, _ in keep.leftover_processes(record.directory):
                print(f"  process {pid} still runs: {' '.join(_cmdline(pid))[:160]}")
            print(f"  remove it with: {keep.env_prefix()}deploy-harness down --fleet {record.name}")
    return 0 if any_running else EXIT_ERROR


def cmd_logs(args: argparse.Namespace) -> int:
    record = keep.find(args.fleet)  # stale fleets too: their logs say what happened
    node = record.node(args.node)
    path = Path(node.state_dir) / ("transcript.log" if args.transcript else "serial.log")
    if not path.exists():
        raise CliError(f"node {args.node} of fleet {record.name} has no log at {path}")
    out = sys.stdout.buffer
    if args.lines is not None:
        out.write(console.tail(path, args.lines, max_bytes=max(64 * 1024, args.lines * 400)).encode() + b"\n")
    else:
        out.write(path.read_bytes())
    out.flush()
    if args.follow:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                while True:
                    chunk = handle.read()
                    if chunk:
                        out.write(chunk)
                        out.flush()
                    else:
                        time.sleep(0.2)
        except KeyboardInterrupt:  # the way to stop following
            pass
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Nothing to stop is no error, with or without --all: exit 0 and say so in one line."""
    if args.all:
        _collect_dead_runs()
    try:
        records = keep.all_fleets() if args.all else [keep.find(args.fleet)]
    except keep.NoFleet as missing:
        print(f"nothing to stop: {missing.what}")
        return 0
    if not records:  # --all
        print(f"nothing to stop: no fleet in {keep.fleets_root()}")
        return 0
    for record in records:
        ended = keep.stop_fleet(record.directory)
        pids = f" (ended pids {', '.join(map(str, ended))})" if ended else " (no process was left)"
        print(f"fleet {record.name} is down; removed {record.directory}{pids}")
    return 0


def _collect_dead_runs() -> None:
    removed = state_dirs.collect()
    if removed:
        print(f"removed {len(removed)} state director{'y' if len(removed) == 1 else 'ies'} of dead runs: "
              + ", ".join(map(str, removed)))


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
    from .vm.shell_session import BackdoorShell

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


# -- argument parsing -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-harness",
        description="Keep a fleet of VMs running in the background and work on it by hand: "
        "boot it, open root shells on its nodes, run commands, snapshot and restore, read logs.",
        epilog=f"Fleets live in {keep.fleets_root()} (NDH_FLEETS_DIR overrides). Errors exit "
        f"with {EXIT_ERROR} ({EXIT_RUN_ERROR} for `run`, whose other codes are the command's).",
    )
    parser.add_argument("--fleet", metavar="NAME", default=None,
                        help="the fleet to work on (needed only when several exist)")
    # Also accepted after the subcommand; SUPPRESS keeps an absent one from hiding the global.
    fleet_option = argparse.ArgumentParser(add_help=False)
    fleet_option.add_argument("--fleet", metavar="NAME", default=argparse.SUPPRESS,
                              help="the fleet to work on (needed only when several exist)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable, help: str, fleet: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[fleet_option] if fleet else [])
        sub.set_defaults(handler=handler)
        return sub

    up = command("up", cmd_up, "boot a fleet and leave it running in the background", fleet=False)
    up.add_argument("--spec", default=fleet_specs.DEFAULT,
                    help=f"built-in spec ({', '.join(fleet_specs.BUILTIN)}), FILE.json, or FILE.py:NAME "
                    f"naming a FleetSpec (default: {fleet_specs.DEFAULT}: nodes alpha and beta on VLAN 1)")
    up.add_argument("--name", help="fleet name (default: the spec's name)")
    up.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="VM accelerator; auto probes that KVM really boots a guest (default: auto)")
    up.add_argument("--boot-timeout", type=float, default=300, metavar="SECONDS",
                    help="how long each node may take to boot (default: 300)")

    command("status", cmd_status, "list fleets and their nodes, with pids; spot stale ones")

    shell = command("shell", cmd_shell, "root shell on a node (Ctrl-] detaches, the VM keeps running)")
    shell.add_argument("node", metavar="NODE")

    run = command("run", cmd_run, "run one command on a node; print its stdout (stderr to "
                  "stderr) and exit with its status")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="give up after this long (exit 124; the command goes on in the guest)")
    run.add_argument("node", metavar="NODE")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD...",
                     help="the command line (words are joined with spaces, as ssh does); options "
                     "after NODE are deploy-harness's up to the first other word or a `--`")

    snapshot = command("snapshot", cmd_snapshot, "save a node's whole state (memory, devices, disk) as NAME")
    snapshot.add_argument("node", metavar="NODE")
    snapshot.add_argument("name", metavar="NAME")
    restore = command("restore", cmd_restore, "go back to a node's snapshot NAME")
    restore.add_argument("node", metavar="NODE")
    restore.add_argument("name", metavar="NAME")

    logs = command("logs", cmd_logs, "show a node's serial console log (also of a stale fleet)")
    logs.add_argument("node", metavar="NODE")
    logs.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what the node writes")
    logs.add_argument("--transcript", action="store_true",
                      help="the backdoor command transcript instead of the serial log")

    down = command("down", cmd_down, "stop a fleet and remove its state")
    down.add_argument("--all", action="store_true", help="every fleet, stale ones included")
    return parser


if __name__ == "__main__":
    sys.exit(main())
