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
import os
import signal
import sys
import traceback
from typing import Callable, Sequence

from .. import fleet_specs, keep
from ..keep import FleetStateError
from ..vm import MachineError
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_RUN_ERROR, CliError
from .fleet_commands import cmd_down, cmd_logs, cmd_status, cmd_up
from .node_commands import cmd_restore, cmd_run, cmd_shell, cmd_snapshot


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


def _fail(message: str, code: int) -> int:
    print(f"deploy-harness: {message}", file=sys.stderr)
    return code


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

