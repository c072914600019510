"""`deploy-harness restore --all NAME`: every node of a kept fleet back to its snapshot NAME at
one moment (paused together, loaded in parallel, resumed together: harness/fleet.py), as a
pytest run restores a checkpoint. NAME is mostly a checkpoint (harness/checkpoints.py); any
snapshot every node has will do (`ndh-pristine`, or one `snapshot` took on each node)."""
from __future__ import annotations

from .. import keep
from ..keep.records import FleetRecord
from ..keep.whole import attached_fleet
from . import checkpoint_report, snapshot_names
from .errors import CliError


def restore_all(record: FleetRecord, name: str) -> str:
    """Restore every node to `name`; returns what to print. Nothing is restored unless every
    node has the snapshot."""
    kept = checkpoint_report.kept(record)
    with attached_fleet(record, f"deploy-harness restore --all {name}") as fleet:
        have = {machine.name: snapshot_names.on_node(machine) for machine in fleet}
        lacking = sorted(node for node, names in have.items() if name not in names)
        if lacking:
            raise CliError(missing(record, name, have, lacking))
        fleet.restore(name)
    nodes = ", ".join(sorted(have))
    if name in kept:
        return (f"restored every node of fleet {record.name} ({nodes}) to checkpoint {name} at one "
                f"moment ({checkpoint_report.when(kept[name].made)}; its value is kept for the "
                "next pytest run that uses it)")
    return f"restored every node of fleet {record.name} ({nodes}) to snapshot {name} at one moment"


def missing(record: FleetRecord, name: str, have: dict[str, list[str]], lacking: list[str]) -> str:
    """Why `restore --all name` restores nothing: which nodes lack it, and the names that would do."""
    common = sorted(set.intersection(*(set(names) for names in have.values()))) if have else []
    some = sorted({n for names in have.values() for n in names} - set(common))
    partial = "; ".join(f"{n} ({', '.join(node for node in sorted(have) if n in have[node])})" for n in some)
    where = "no node has it" if len(lacking) == len(have) else f"{', '.join(lacking)} lack{'s' if len(lacking) == 1 else ''} it"
    return (
        f"cannot restore every node of fleet {record.name} to {name!r}: {where}, and nothing was "
        f"restored. Checkpoints of fleet {record.name}: {checkpoint_report.names(record)}; snapshots "
        f"every node has: {', '.join(common) or 'none'}"
        + (f"; snapshots of some nodes only: {partial} (`{keep.env_prefix()}deploy-harness restore NODE NAME`)" if partial else "")
    )
