"""A kept fleet's state file, `<fleet dir>/fleet.json`: the records of its nodes and switches,
read and written, and finding a fleet by name."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..specs import check_node_names
from ..vm.adopted import is_running
from .errors import FleetStateError, NoFleet
from .paths import check_name, check_private, existing_root, fleets_root

STATE_FILE = "fleet.json"
FORMAT = 1
_REQUIRED = ("name", "status")
_OPTIONAL = ("origin", "owner_pid", "owner_started", "run_id", "accel", "created", "last_test")


@dataclass
class NodeRecord:
    name: str
    pid: int | None
    started: int | None
    state_dir: str
    start_script: str
    token: str
    vlans: dict[int, str]
    allow_reboot: bool
    accel: str
    forwards: list[tuple[int, int]]  # (guest port, host port on 127.0.0.1)
    boot_timeout: float
    # How the image gives QEMU the accelerator, and the waits' slowdown: a restart from a later
    # process must start the node as the first one did (older records: the engine's defaults).
    accel_options: list[str] | None = None
    time_scale: float = 1.0
    snapshot_drive: str | None = None

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.started)


@dataclass
class SwitchRecord:
    vlan: int
    pid: int | None
    started: int | None

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.started)


@dataclass
class Health:
    state: str  # "running", "degraded", "booting" or "stale"
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in ("running", "degraded")


@dataclass
class FleetRecord:
    name: str
    directory: Path
    status: str = "booting"  # "booting" until the fleet is up, then "up"
    origin: str = ""
    owner_pid: int | None = None
    owner_started: int | None = None
    run_id: str | None = None
    accel: str = ""
    created: float = 0.0
    last_test: str | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    switches: list[SwitchRecord] = field(default_factory=list)
    unreadable: str | None = None  # why fleet.json could not be read

    def health(self) -> Health:
        if self.unreadable:
            return Health("stale", self.unreadable)
        if self.status == "booting":
            if is_running(self.owner_pid, self.owner_started):
                return Health("booting", f"{self.origin} (pid {self.owner_pid}) is booting it")
            return Health("stale", f"its boot was interrupted ({self.origin}, pid {self.owner_pid}, is gone)")
        dead = [f"QEMU of {n.name} (pid {n.pid})" for n in self.nodes.values() if not n.running]
        dead += [f"the switch of VLAN {s.vlan} (pid {s.pid})" for s in self.switches if not s.running]
        if not dead:
            return Health("running")
        if all(not n.running for n in self.nodes.values()):
            return Health("stale", "its processes are gone: " + ", ".join(dead) + " not running")
        return Health("degraded", ", ".join(dead) + " not running")

    def node(self, name: str) -> NodeRecord:
        try:
            return self.nodes[name]
        except KeyError:
            raise FleetStateError(
                f"fleet {self.name} has no node {name!r} (nodes: {', '.join(sorted(self.nodes)) or 'none'})"
            ) from None

    def pids(self) -> list[int]:
        """Pids of this fleet's processes that still run (nodes, then switches)."""
        return [r.pid for r in [*self.nodes.values(), *self.switches] if r.running and r.pid]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            **{key: getattr(self, key) for key in _REQUIRED + _OPTIONAL},
            "nodes": {
                name: {**vars(node), "vlans": {str(k): v for k, v in node.vlans.items()}}
                for name, node in self.nodes.items()
            },
            "switches": [vars(switch) for switch in self.switches],
        }

    @classmethod
    def from_json(cls, directory: Path, data: dict) -> "FleetRecord":
        if data.get("format") != FORMAT:
            raise ValueError(f"state format {data.get('format')!r}, expected {FORMAT}")
        nodes = {
            name: NodeRecord(**{
                **node,
                "vlans": {int(k): v for k, v in node["vlans"].items()},
                "forwards": [tuple(f) for f in node["forwards"]],
            })
            for name, node in data["nodes"].items()
        }
        check_node_names(str(data["name"]), list(nodes))  # `../x` would lead out of the fleet's directory
        for node in nodes.values():  # a node directory elsewhere would lead locks and logs there
            if Path(node.state_dir).resolve() != (directory / node.name).resolve():
                raise ValueError(f"node {node.name} has its state in {node.state_dir}, outside {directory}")
        return cls(
            directory=directory,
            nodes=nodes,
            switches=[SwitchRecord(**s) for s in data.get("switches", [])],
            **{key: data[key] for key in _REQUIRED},
            **{key: data[key] for key in _OPTIONAL if key in data},
        )

    def write(self) -> None:
        """Atomically (rename), private (0600: the tokens drive root shells)."""
        target = self.directory / STATE_FILE
        temporary = target.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)  # then a file of our own, never one a symlink leads to
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
        temporary.replace(target)


def read(directory: Path) -> FleetRecord:
    """The record of the fleet in `directory` (unreadable state gives a stale record)."""
    check_private(directory, "fleet directory")
    try:
        with os.fdopen(os.open(directory / STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW)) as handle:
            return FleetRecord.from_json(directory, json.load(handle))
    except FileNotFoundError:
        why = f"it has no {STATE_FILE}"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # OSError: ELOOP, a symlink
        why = f"its {STATE_FILE} is unreadable ({exc})"
    return FleetRecord(directory.name, directory, unreadable=why)


def survey() -> tuple[list[FleetRecord], list[FleetStateError]]:
    """Every fleet in the fleets root, and the refusal of each directory there that fails the
    trust rule (a symlink, not yours, open to others): `status` and `down --all` report those
    and go on with the others. A fleets root that fails the rule is refused as a whole."""
    root = existing_root()
    if root is None:
        return [], []
    records, refused = [], []
    for directory in sorted(root.iterdir()):
        if not (directory.is_dir() or directory.is_symlink()):
            continue
        try:
            records.append(read(directory))
        except FleetStateError as refusal:
            refused.append(refusal)
    return records, refused


def all_fleets() -> list[FleetRecord]:
    """Every fleet in the fleets root; the first refusal of a directory there is raised."""
    records, refused = survey()
    if refused:
        raise refused[0]
    return records


def find(name: str | None) -> FleetRecord:
    """The fleet called `name`; without a name, the only fleet there is."""
    if name is not None:
        check_name(name)
        root = existing_root()
        if root is None or not os.path.lexists(root / name):
            known = ", ".join(r.name for r in all_fleets()) or "none"
            raise NoFleet(f"no fleet named {name!r} in {fleets_root()} (fleets: {known})")
        return read(root / name)
    fleets = all_fleets()
    if not fleets:
        raise NoFleet(f"no fleet is running (none in {fleets_root()})")
    if len(fleets) > 1:
        listed = ", ".join(f"{r.name} ({r.health().state})" for r in fleets)
        raise FleetStateError(f"several fleets exist: {listed}. Pick one with --fleet NAME.")
    return fleets[0]


def require_usable(record: FleetRecord) -> None:
    health = record.health()
    if health.state == "stale":
        raise FleetStateError(
            f"fleet {record.name} is stale: {health.detail} (a killed run, guests that powered "
            f"off, or a host reboot). Its serial logs are still in {record.directory} "
            f"(`deploy-harness logs NODE --fleet {record.name}`); remove it with "
            f"`deploy-harness down --fleet {record.name}`."
        )
    if health.state == "booting":
        raise FleetStateError(f"fleet {record.name} is still booting: {health.detail}. Try again when it is up.")
