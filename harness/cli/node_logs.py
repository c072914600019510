"""Where `deploy-harness logs` finds a node's serial log or transcript: in the node's recorded
state directory, or, for a fleet whose `up` was interrupted before it recorded its nodes (the
record lists nodes once they are booted: harness/keep/claims.py), in the node's directory of
the fleet, where the boot wrote them."""
from __future__ import annotations

import re
from pathlib import Path

from ..keep.records import FleetRecord
from .errors import CliError

_NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
LOG_FILES = {False: "serial.log", True: "transcript.log"}


def log_path(record: FleetRecord, node: str, transcript: bool) -> Path:
    name = LOG_FILES[transcript]
    if node in record.nodes:
        path = Path(record.nodes[node].state_dir) / name
        if not path.exists():
            raise CliError(f"node {node} of fleet {record.name} has no log at {path}")
        return path
    if record.nodes:
        record.node(node)  # raises: no such node, and which there are
    return _unrecorded(record, node, name)


def _unrecorded(record: FleetRecord, node: str, name: str) -> Path:
    health = record.health()
    why = f"fleet {record.name} has recorded no nodes ({health.state}: {health.detail or 'nothing booted yet'})"
    found = _node_dirs(record.directory)
    directory = record.directory / node
    if not _NODE_NAME.fullmatch(node) or node not in found:
        listed = ", ".join(sorted(found)) or "none"
        raise CliError(
            f"{why}, and it has no directory of a node {node!r} in {record.directory} (node "
            f"directories there: {listed}); remove the fleet with "
            f"`deploy-harness down --fleet {record.name}`"
        )
    path = directory / name
    if not path.is_file() or path.is_symlink():
        raise CliError(
            f"{why}; node {node} has no {name} in {directory}: its boot stopped before QEMU "
            f"started (the serial log begins when QEMU does)"
        )
    return path


def _node_dirs(directory: Path) -> set[str]:
    """Names of the node directories of a fleet directory (real directories, not symlinks,
    holding a transcript or a start script: not the VLAN switches' socket directories)."""
    try:
        return {
            entry.name for entry in directory.iterdir()
            if entry.is_dir() and not entry.is_symlink()
            and ((entry / "transcript.log").exists() or (entry / "bin").is_dir())
        }
    except OSError:
        return set()
