"""`deploy-harness rehearse --base REF --head REF [--host NAME ...] [--report-dir DIR]`:
deploy the head onto twins of the hosts as the base configures them and report per host
(docs/rehearsal.md). Exit 0: every host took the head; 3: some host would break; 1: the
rehearsal could not run (what is missing is said on stderr)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..twins import requirements, twin_fleet, worktrees
from ..twins.observe import ObservationError
from ..twins.observations import EXIT_ERROR
from ..twins.rehearse import rehearse
from .errors import CliError

DEFAULT_REPORT_DIR = "rehearsal"


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--base", required=True, metavar="REF",
                     help="what the hosts run now (e.g. origin/main): the twins boot its configurations")
    sub.add_argument("--head", required=True, metavar="REF",
                     help="what would be deployed (e.g. the pull request's commit)")
    sub.add_argument("--host", action="append", default=[], metavar="NAME", dest="hosts",
                     help="rehearse only this deployable host (repeatable; default: every one)")
    sub.add_argument("--report-dir", type=Path, default=Path(DEFAULT_REPORT_DIR), metavar="DIR",
                     help=f"where rehearsal.md and rehearsal.json go (default: ./{DEFAULT_REPORT_DIR})")
    sub.add_argument("--repo", type=Path, default=Path("."), metavar="DIR",
                     help="the fleet repository's checkout (default: the current directory)")
    sub.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                     help="VM accelerator; auto needs a KVM guest to really run (default: auto)")


def cmd_rehearse(args: argparse.Namespace) -> int:
    try:
        repo = worktrees.repository_root(args.repo)
        worktrees.resolve(repo, args.base, "base")
        worktrees.resolve(repo, args.head, "head")
    except worktrees.RehearsalError as error:
        raise CliError(str(error), EXIT_ERROR) from None
    problems = requirements.missing(args.accel)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise CliError(f"rehearse: cannot boot NixOS twins on this machine; nothing was rehearsed:\n{lines}",
                       EXIT_ERROR)
    try:
        report = rehearse(repo, args.base, args.head, args.hosts, twin_fleet.booter(args.accel),
                          progress=lambda line: print(f"rehearse: {line}", file=sys.stderr, flush=True))
    except (worktrees.RehearsalError, ObservationError) as error:  # nothing reported: it did not finish
        raise CliError(f"rehearse: {error}", EXIT_ERROR) from None
    markdown, data = report.write(args.report_dir)
    sys.stdout.write(report.markdown())
    print(f"rehearse: report in {markdown} and {data}", file=sys.stderr)
    return report.exit_status
