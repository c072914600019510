"""`deploy-harness`: keep a fleet of VMs running in the background and work on it by hand.

    deploy-harness up [--spec micro|FILE.json|FILE.py:NAME] [--name NAME]
    deploy-harness status                # fleets, nodes, checkpoints
    deploy-harness shell NODE            # Ctrl-] detaches, the VM keeps running
    deploy-harness run NODE [--timeout S] [--] CMD...   # exits with CMD's status
    deploy-harness snapshot NODE NAME / restore NODE NAME
    deploy-harness restore --all NAME    # every node at one moment: a checkpoint
    deploy-harness logs NODE [-f]
    deploy-harness down
    deploy-harness rehearse --base REF --head REF [--host NAME ...] [--report-dir DIR]

Fleets live in `$NDH_FLEETS_DIR`, else `$XDG_RUNTIME_DIR/nixos-deploy-harness`, else
`/tmp/ndh-<uid>`, one directory per fleet name (see harness/keep/). Every command
but `up` takes `--fleet NAME`, needed only when several fleets exist.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Sequence

from .. import fleet_specs
from ..keep import FleetStateError
from ..vm import MachineError
from . import arguments
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_RUN_ERROR, CliError
from .fleet_commands import cmd_down, cmd_logs, cmd_status, cmd_up
from .node_commands import cmd_restore, cmd_run, cmd_shell, cmd_snapshot
from .rehearse_command import cmd_rehearse

HANDLERS = {
    "up": cmd_up, "status": cmd_status, "shell": cmd_shell, "run": cmd_run,
    "snapshot": cmd_snapshot, "restore": cmd_restore, "logs": cmd_logs, "down": cmd_down,
    "rehearse": cmd_rehearse,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = arguments.parse(sys.argv[1:] if argv is None else argv, HANDLERS)
    except CliError as exc:  # `run`'s options after NODE
        return _fail(str(exc), exc.code)
    # SIGTERM and SIGHUP (a closed terminal, a cancelled job) clean up as Ctrl-C does; one
    # that is ignored (`nohup`) stays ignored, as the pytest plugin leaves it.
    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) == signal.SIG_DFL:
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
