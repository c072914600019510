"""What `deploy-harness` says about a kept fleet's checkpoints (harness/checkpoints.py): the
lines of `status`, and the names a refused `restore` or `snapshot` lists.

Whether a checkpoint still fits its code is decided by the next pytest use only (it compares
the fingerprint of the setup it is given); these commands show the records as they are, with
the fingerprint's first 12 hex digits to compare."""
from __future__ import annotations

import json
import time

from .. import checkpoints
from ..keep.records import FleetRecord
from .errors import CliError

FINGERPRINT_SHOWN = 12


def kept(record: FleetRecord) -> dict[str, checkpoints.Record]:
    """The fleet's checkpoint records; an unreadable file is an error that says what to do."""
    try:
        return checkpoints.records(record.directory)
    except checkpoints.CheckpointError as exc:
        raise CliError(f"fleet {record.name}: {exc}") from None


def names(record: FleetRecord) -> str:
    """`a, b` or `none`, for messages (an unreadable file reads as none here)."""
    try:
        return ", ".join(sorted(checkpoints.records(record.directory))) or "none"
    except checkpoints.CheckpointError:
        return "none readable"


def when(made: float | None) -> str:
    if made is None:
        return "made at a time not recorded"
    return time.strftime("made %Y-%m-%d %H:%M:%S UTC", time.gmtime(made))


def status_lines(record: FleetRecord) -> list[str]:
    """One line per checkpoint, then how to go back to one and when one is made again."""
    try:
        found = checkpoints.records(record.directory)
    except checkpoints.CheckpointError as exc:
        return [f"  checkpoints: {exc}"]
    lines = []
    for name in sorted(found):
        kept_one = found[name]
        parents = [p + ("" if p in found else " (gone)") for p in kept_one.parents]
        size = len(json.dumps(kept_one.value))
        lines.append(
            f"  checkpoint {name:<12} {when(kept_one.made)} (setup {kept_one.setup_s:.1f} s)"
            + (f", starts from {', '.join(parents)}" if parents else "")
            + f", value kept ({size} bytes of JSON), fingerprint {kept_one.fingerprint[:FINGERPRINT_SHOWN]}"
        )
    if lines:
        lines.append(
            f"  (`deploy-harness restore --all NAME --fleet {record.name}` goes back to one; the next "
            "pytest run that uses one makes it again if its setup's code or the fleet spec changed)"
        )
    return lines
