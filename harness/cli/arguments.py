"""deploy-harness's command line: the parser, the checks of option values, and `run`'s words.

`run NODE [OPTIONS] [--] CMD...`: the words after NODE are split off before argparse sees
them, so that a `--` there reaches the command parser as written (argparse would drop it and
take `--version` after it for an option). Options between NODE and the command are
deploy-harness's; the first other word, or a `--`, starts the command."""
from __future__ import annotations

import argparse
import math
from typing import Callable, Sequence

from .. import fleet_specs, keep
from ..vm.guest import DEFAULT_TIMEOUT
from .errors import EXIT_ERROR, EXIT_RUN_ERROR, RUN_USAGE, CliError
from .rehearse_command import add_arguments as add_rehearse_arguments

# `run` waits this long for the command by default (the NixOS test driver's timeout).
RUN_TIMEOUT = DEFAULT_TIMEOUT
# Options of `run` (and the global one) that take a separate value: `--timeout 60`.
VALUE_OPTIONS = ("--fleet", "--timeout")


def seconds(text: str) -> float:
    """A timeout: a finite number of seconds above zero (every wait of the CLI has an end)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def line_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of lines (0 or more), not {text!r}")
    return value


def parse(argv: Sequence[str], handlers: dict[str, Callable]) -> argparse.Namespace:
    head, words = split_run(list(argv))
    args = parser(handlers).parse_args(head)
    if args.command == "run":
        args.cmd = run_command(words, args)
    return args


def split_run(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments up to and including `run`'s NODE, the words after it); other commands
    keep all their arguments."""
    index = _skip_options(argv, 0)
    if index >= len(argv) or argv[index] != "run":
        return argv, []
    index = _skip_options(argv, index + 1)
    if index < len(argv) and argv[index] == "--":  # `run -- NODE CMD...`
        index += 1
    if index >= len(argv):
        return argv, []
    return argv[: index + 1], argv[index + 1 :]


def _skip_options(argv: list[str], index: int) -> int:
    while index < len(argv) and argv[index].startswith("-") and argv[index] not in ("-", "--"):
        index += 2 if _takes_value(argv[index]) else 1
    return index


def _takes_value(word: str) -> bool:
    """`--fleet` / `--timeout` or an abbreviation argparse accepts, without `=VALUE`."""
    return "=" not in word and len(word) > 2 and any(option.startswith(word) for option in VALUE_OPTIONS)


def run_command(words: list[str], args: argparse.Namespace) -> list[str]:
    """Parse the options between NODE and the command (or a `--`) into `args`; return the
    command's words. Options there are deploy-harness's or refused: never sent to the guest."""
    options = []
    while words and words[0].startswith("-"):
        word = words.pop(0)
        if word == "--":
            break
        options.append(word)
        if _takes_value(word) and words:
            options.append(words.pop(0))
    run_options = _RunOptions(prog="deploy-harness run", add_help=False)
    run_options.add_argument("--fleet", metavar="NAME", default=argparse.SUPPRESS)
    run_options.add_argument("--timeout", type=seconds, default=argparse.SUPPRESS, metavar="SECONDS")
    run_options.parse_args(options, namespace=args)
    return words


class _RunOptions(argparse.ArgumentParser):
    def error(self, message: str):  # no exit 2: `run`'s own errors exit 255, the rest is CMD's
        hint = " (a command that starts with '-' goes after `--`)" if "unrecognized" in message else ""
        raise CliError(f"run: {message}{hint}\nusage: {RUN_USAGE}", EXIT_RUN_ERROR)


def parser(handlers: dict[str, Callable]) -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="deploy-harness",
        description="Keep a fleet of VMs running in the background and work on it by hand: "
        "boot it, open root shells on its nodes, run commands, snapshot and restore, read logs.",
        epilog=f"Fleets live in {keep.fleets_root()} (NDH_FLEETS_DIR overrides). Errors exit "
        f"with {EXIT_ERROR} ({EXIT_RUN_ERROR} for `run`, whose other codes are the command's).",
    )
    main.add_argument("--fleet", metavar="NAME", default=None,
                      help="the fleet to work on (needed only when several exist)")
    # Also accepted after the subcommand; SUPPRESS keeps an absent one from hiding the global.
    fleet_option = argparse.ArgumentParser(add_help=False)
    fleet_option.add_argument("--fleet", metavar="NAME", default=argparse.SUPPRESS,
                              help="the fleet to work on (needed only when several exist)")
    commands = main.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, fleet: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[fleet_option] if fleet else [])
        sub.set_defaults(handler=handlers[name])
        return sub

    up = command("up", "boot a fleet and leave it running in the background", fleet=False)
    up.add_argument("--spec", default=None,
                    help=f"built-in spec ({', '.join(fleet_specs.BUILTIN)}), FILE.json, or FILE.py:NAME "
                    f"naming a FleetSpec (default: {fleet_specs.DEFAULT}: nodes alpha and beta on VLAN 1)")
    up.add_argument("--twins", metavar="HOST,HOST",
                    help="boot these hosts' twins (folders of hosts/), the cache host's twin and a deployer "
                    "on one VLAN at the hosts' addresses instead of --spec (docs/twins.md; needs Nix >= 2.18 and KVM)")
    up.add_argument("--name", help="fleet name (default: the spec's name)")
    up.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="VM accelerator; auto probes that KVM really boots a guest (default: auto)")
    up.add_argument("--boot-timeout", type=seconds, default=300, metavar="SECONDS",
                    help="how long each node may take to boot (default: 300)")

    command("status", "list fleets, their nodes with pids, and their checkpoints; spot stale ones")

    shell = command("shell", "root shell on a node (Ctrl-] detaches, the VM keeps running)")
    shell.add_argument("node", metavar="NODE")

    run = command("run", "run one command on a node; print its stdout (stderr to stderr) and exit "
                  "with its status")
    run.add_argument("--timeout", type=seconds, default=RUN_TIMEOUT, metavar="SECONDS",
                     help=f"give up after this long and exit 124 (default: {RUN_TIMEOUT:g})")
    run.add_argument("node", metavar="NODE")
    run.add_argument("cmd", nargs="*", metavar="CMD",
                     help="the command line (words are joined with spaces, as ssh does); options "
                     "after NODE are deploy-harness's up to the first other word or a `--`")

    snapshot = command("snapshot", "save a node's whole state (memory, devices, disk) as NAME")
    snapshot.add_argument("node", metavar="NODE")
    snapshot.add_argument("name", metavar="NAME")
    restore = command("restore", "go back to a node's snapshot NAME, or with --all every node's "
                      "at one moment (a checkpoint a pytest run made: `status` lists them)")
    restore.add_argument("--all", action="store_true",
                         help="every node of the fleet, paused and restored together (no NODE)")
    restore.add_argument("node", metavar="NODE", nargs="?", help="the node (not with --all)")
    restore.add_argument("name", metavar="NAME", help="a snapshot or checkpoint name")

    logs = command("logs", "show a node's serial console log (also of a stale fleet)")
    logs.add_argument("node", metavar="NODE")
    logs.add_argument("-n", "--lines", type=line_count, metavar="N", help="only the last N lines")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what the node writes")
    logs.add_argument("--transcript", action="store_true",
                      help="the backdoor command transcript instead of the serial log")

    down = command("down", "stop a fleet and remove its state")
    down.add_argument("--all", action="store_true", help="every fleet, stale ones included")

    add_rehearse_arguments(command(
        "rehearse", "deploy a head onto twins of the hosts as a base configures them, as the deploy "
        "workflow would, and report per host (exit 3: a host would break; docs/rehearsal.md)", fleet=False))
    return main
