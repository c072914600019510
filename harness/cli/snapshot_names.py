"""Snapshot names for `deploy-harness snapshot` and `restore`: the rule a new one follows, and
the ones a node has (QEMU's `info snapshots`)."""
from __future__ import annotations

from ..vm import Machine
from .errors import SNAPSHOT_NAME, CliError


def check(name: str) -> str:
    if not SNAPSHOT_NAME.fullmatch(name):
        raise CliError(f"snapshot name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return name


def on_node(machine: Machine) -> list[str]:
    return parse_info(machine.send_monitor_command("info snapshots"))


def parse_info(info: str) -> list[str]:
    """Tags from HMP `info snapshots`: after the header row `ID TAG VM SIZE ...`, one row per
    snapshot whose ID is a number, or `--` when the snapshot is on all disks (QEMU 7.2)."""
    names = []
    for line in info.splitlines():
        fields = line.split()
        if len(fields) >= 2 and (fields[0].isdigit() or fields[0] == "--"):
            names.append(fields[1])
    return names
