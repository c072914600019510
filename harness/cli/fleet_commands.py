"""`deploy-harness up`, `status`, `logs`, `down`: whole fleets."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import psutil

from .. import accel as accel_mod
from .. import fleet_specs, keep, state_dirs
from .boot_progress import BootProgress
from ..fleet import PRISTINE, Fleet
from ..vm import MachineError, console, disk_aio
from . import checkpoint_report, node_logs
from .errors import EXIT_ERROR, CliError


# -- up -------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    twins = _twins(args)
    spec = twins.spec if twins else fleet_specs.load(args.spec or fleet_specs.DEFAULT)
    name = keep.check_name(args.name or keep.dir_name_for(spec.name))
    if name != spec.name:
        spec = dataclasses.replace(spec, name=name)
    try:
        choice = accel_mod.resolve(args.accel)
    except Exception as exc:
        raise CliError(f"cannot choose an accelerator: {exc}") from exc
    print(f"accelerator: {choice.name} ({choice.reason})", flush=True)
    try:
        aio = disk_aio.choice()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"disk aio: {aio.name} ({aio.reason})", flush=True)
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
                if twins:
                    twins.after_boot(fleet)
        except Exception as exc:  # the image or the VMs: a message for the user, not a bug
            raise CliError(f"fleet {name} did not boot: {type(exc).__name__}: {exc}") from exc
        try:
            fleet.snapshot(PRISTINE)
            # Nodes QEMU cannot snapshot (9p shares, docs/nixos-facts.md) are listed, not fatal.
            refused = fleet.cold_boot
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


def _twins(args: argparse.Namespace):
    """The twin fleet of `up --twins` (harness/twins/up_twins.py), or None."""
    if not getattr(args, "twins", None):
        return None
    if args.spec is not None:
        raise CliError("up: --twins and --spec name two different fleets; give one of them")
    from ..twins import up_twins

    try:
        return up_twins.setup(args.twins, args.accel, name=args.name)
    except up_twins.TwinsRefused as refusal:
        raise CliError(f"up: {refusal}") from None


# -- status, logs, down ---------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    records, refused = ([keep.find(args.fleet)], []) if args.fleet else keep.survey()
    _report_skipped(refused)
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
        for line in checkpoint_report.status_lines(record):
            print(line)
        if health.state == "stale":
            # An interrupted boot's processes are in no record: find them by their command lines.
            for pid, _ in keep.leftover_processes(record.directory):
                print(f"  process {pid} still runs: {' '.join(_cmdline(pid))[:160]}")
            print(f"  remove it with: {keep.env_prefix()}deploy-harness down --fleet {record.name}")
    return 0 if any_running else EXIT_ERROR


def cmd_logs(args: argparse.Namespace) -> int:
    record = keep.find(args.fleet)  # stale fleets too: their logs say what happened
    path = node_logs.log_path(record, args.node, args.transcript)
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
    """Nothing to stop is no error, with or without --all: exit 0 and say so in one line. With
    --all, a directory that fails the trust rule (or a fleet that cannot be stopped) is skipped
    and reported, the others are stopped all the same, and the exit status is 1."""
    refused: list[keep.FleetStateError] = []
    if args.all:
        refused += _collect_dead_runs()
    try:
        records, skipped = keep.survey() if args.all else ([keep.find(args.fleet)], [])
    except keep.NoFleet as missing:
        print(f"nothing to stop: {missing.what}")
        return 0
    refused += skipped
    if not records and not refused:  # --all
        print(f"nothing to stop: no fleet in {keep.fleets_root()}")
        return 0
    for record in records:
        try:
            ended = keep.stop_fleet(record.directory)
        except keep.FleetStateError as failure:
            if not args.all:
                raise
            refused.append(failure)
            continue
        pids = f" (ended pids {', '.join(map(str, ended))})" if ended else " (no process was left)"
        print(f"fleet {record.name} is down; removed {record.directory}{pids}")
    _report_skipped(refused)
    return EXIT_ERROR if refused else 0


def _report_skipped(refused: list) -> None:
    """One line on stderr per directory a command skipped, with the refusal (why, what to do)."""
    for refusal in refused:
        print(f"deploy-harness: skipped: {refusal}", file=sys.stderr)


def _collect_dead_runs() -> list[keep.FleetStateError]:
    """Remove the state directories of dead runs; a state root that fails the trust rule is
    left alone and returned as a refusal."""
    try:
        removed = state_dirs.collect()
    except state_dirs.UntrustedDirectory as refusal:
        return [keep.FleetStateError(str(refusal))]
    if removed:
        print(f"removed {len(removed)} state director{'y' if len(removed) == 1 else 'ies'} of dead runs: "
              + ", ".join(map(str, removed)))
    return []


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []
