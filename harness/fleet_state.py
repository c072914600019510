"""Kept fleets: fleets left running for the user (`deploy-harness up`, `pytest --keep-vms`) and
found again by later processes.

Each kept fleet lives in `<fleets root>/<name>/`, one fleet per name. The root is
`$NDH_FLEETS_DIR`, else `$XDG_RUNTIME_DIR/nixos-deploy-harness`, else `/tmp/ndh-<uid>`: per
user, private, and short (unix socket paths must stay under 108 bytes). The fleet's state file,
`fleet.json`, holds what a later process needs to drive it: each node's QEMU pid and start time
(so a reused pid never passes for it), start script, state directory, backdoor token, VLANs,
port forwards and accelerator, and each VLAN switch's pid.

QEMU serves a node's console and QMP to one client at a time, so whoever drives a node holds
its lock (`<node dir>/attach.lock`, flock): a second one gets a clear "in use by ..." error
instead of a connection that QEMU never answers.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from .vm import Machine
from .vm.adopted import AdoptedProcess, is_running, start_time, terminate
from .vm.machine import PortForward

if TYPE_CHECKING:
    from .fleet import Fleet

STATE_FILE = "fleet.json"
FORMAT = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
ATTACH_TIMEOUT = 10  # seconds for a running guest's shell to answer a reattach


class FleetStateError(RuntimeError):
    """A kept fleet cannot be used as asked. The message says why and what to do."""


# -- where fleets live ------------------------------------------------------------------------


def fleets_root() -> Path:
    explicit = os.environ.get("NDH_FLEETS_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "nixos-deploy-harness"
    return Path(f"/tmp/ndh-{os.getuid()}")


def _private_root() -> Path:
    """The fleets root, created 0700 if missing; refused if someone else could write to it."""
    root = fleets_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise FleetStateError(
            f"{root} is not a private directory of yours (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}): remove it, or set NDH_FLEETS_DIR to another place"
        )
    return root


def env_prefix() -> str:
    """What a printed command needs in front when fleets live in a non-default root."""
    explicit = os.environ.get("NDH_FLEETS_DIR")
    return f"NDH_FLEETS_DIR={shlex.quote(explicit)} " if explicit else ""


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise FleetStateError(
            f"fleet name {name!r} is not usable: letters, digits, '_', '.', '-', at most 40 "
            "characters, starting with a letter or digit"
        )
    return name


def dir_name_for(spec_name: str) -> str:
    """A spec name made usable as a fleet name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_name).strip("-._")[:32]
    return cleaned or "fleet"


# -- the records ------------------------------------------------------------------------------


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

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.started)

    @property
    def serial_log(self) -> Path:
        return Path(self.state_dir) / "serial.log"

    @property
    def transcript(self) -> Path:
        return Path(self.state_dir) / "transcript.log"


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
            "name": self.name,
            "status": self.status,
            "origin": self.origin,
            "owner_pid": self.owner_pid,
            "owner_started": self.owner_started,
            "run_id": self.run_id,
            "accel": self.accel,
            "created": self.created,
            "last_test": self.last_test,
            "nodes": {
                name: {**node.__dict__, "vlans": {str(k): v for k, v in node.vlans.items()}}
                for name, node in self.nodes.items()
            },
            "switches": [s.__dict__ for s in self.switches],
        }

    @classmethod
    def from_json(cls, directory: Path, data: dict) -> "FleetRecord":
        if data.get("format") != FORMAT:
            raise ValueError(f"state format {data.get('format')!r}, expected {FORMAT}")
        nodes = {}
        for name, node in data["nodes"].items():
            node = dict(node)
            node["vlans"] = {int(k): v for k, v in node["vlans"].items()}
            node["forwards"] = [tuple(f) for f in node["forwards"]]
            nodes[name] = NodeRecord(**node)
        return cls(
            name=data["name"],
            directory=directory,
            status=data["status"],
            origin=data.get("origin", ""),
            owner_pid=data.get("owner_pid"),
            owner_started=data.get("owner_started"),
            run_id=data.get("run_id"),
            accel=data.get("accel", ""),
            created=data.get("created", 0.0),
            last_test=data.get("last_test"),
            nodes=nodes,
            switches=[SwitchRecord(**s) for s in data.get("switches", [])],
        )

    def write(self) -> None:
        """Atomically (rename), private (0600: the tokens drive root shells)."""
        target = self.directory / STATE_FILE
        temporary = target.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
        temporary.replace(target)


def read(directory: Path) -> FleetRecord:
    """The record of the fleet in `directory` (unreadable state gives a stale record)."""
    try:
        data = json.loads((directory / STATE_FILE).read_text())
        return FleetRecord.from_json(directory, data)
    except FileNotFoundError:
        why = f"it has no {STATE_FILE}"
    except (ValueError, KeyError, TypeError) as exc:
        why = f"its {STATE_FILE} is unreadable ({exc})"
    return FleetRecord(directory.name, directory, unreadable=why)


def all_fleets() -> list[FleetRecord]:
    root = fleets_root()
    if not root.is_dir():
        return []
    return [read(d) for d in sorted(root.iterdir()) if d.is_dir()]


def find(name: str | None) -> FleetRecord:
    """The fleet called `name`; without a name, the only fleet there is."""
    if name is not None:
        check_name(name)
        directory = fleets_root() / name
        if not directory.is_dir():
            known = ", ".join(r.name for r in all_fleets()) or "none"
            raise FleetStateError(
                f"no fleet named {name!r} in {fleets_root()} (fleets: {known}). "
                "Start one with `deploy-harness up`."
            )
        return read(directory)
    fleets = all_fleets()
    if not fleets:
        raise FleetStateError(
            f"no fleet is running (none in {fleets_root()}). Start one with `deploy-harness up`."
        )
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


def how_to_attach(name: str, nodes: Iterable[str], directory: Path | None = None) -> list[str]:
    """The exact commands that reach a kept fleet (printed by up, --keep-vms and pause)."""
    env = env_prefix()
    where = f" (state in {directory})" if directory else ""
    lines = [f"fleet {name} is running{where}. Attach a root shell to a node with:"]
    lines += [f"  {env}deploy-harness shell {node} --fleet {name}" for node in sorted(nodes)]
    lines += ["Stop it and remove its state with:", f"  {env}deploy-harness down --fleet {name}"]
    return lines


# -- claiming a name, saving a Fleet ------------------------------------------------------------


def claim(name: str, origin: str, run_id: str | None = None) -> Path:
    """Create the directory of a new fleet `name`, marked as booting by this process."""
    check_name(name)
    directory = _private_root() / name
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        health = read(directory).health()
        advice = (
            f"use it, or stop it with `deploy-harness down --fleet {name}`"
            if health.state != "stale"
            else f"its logs are kept until you remove it with `deploy-harness down --fleet {name}`"
        )
        detail = f": {health.detail}" if health.detail else ""
        raise FleetStateError(
            f"a fleet named {name} exists already ({health.state}{detail}); {advice}. "
            "Or pick another name with --name."
        ) from None
    FleetRecord(
        name,
        directory,
        origin=origin,
        owner_pid=os.getpid(),
        owner_started=start_time(os.getpid()),
        run_id=run_id,
        created=time.time(),
    ).write()
    return directory


def claim_free(spec_name: str, origin: str, run_id: str | None = None) -> Path:
    """Claim `spec_name`, or `spec_name-2`, `-3`, ... if taken (several kept fleets of one
    spec: xdist workers, module-scoped fleets, an earlier run's fleet still up)."""
    base = dir_name_for(spec_name)
    for number in range(1, 100):
        name = base if number == 1 else f"{base}-{number}"
        try:
            return claim(name, origin, run_id)
        except FleetStateError:
            if not (fleets_root() / name).exists():
                raise
    raise FleetStateError(f"no free fleet name {base}-N in {fleets_root()}: remove old fleets with `deploy-harness down`")


def record_of(fleet: "Fleet", origin: str, run_id: str | None, last_test: str | None = None) -> FleetRecord:
    nodes = {}
    for machine in fleet:
        pid = machine.pid
        nodes[machine.name] = NodeRecord(
            name=machine.name,
            pid=pid,
            started=start_time(pid) if pid else None,
            state_dir=str(machine.state_dir),
            start_script=str(machine.start_script),
            token=machine.backdoor_token,
            vlans={n: str(p) for n, p in machine.vlans.items()},
            allow_reboot=machine.allow_reboot,
            accel=machine.accel,
            forwards=[(f.guest_port, f.host_port) for f in machine.forwards],
            boot_timeout=machine.boot_timeout,
        )
    switches = []
    for number, switch in sorted(fleet.switches.items()):
        pid = switch.pid
        switches.append(SwitchRecord(number, pid, start_time(pid) if pid else None))
    return FleetRecord(
        name=fleet.state_dir.name,
        directory=fleet.state_dir,
        status="up",
        origin=origin,
        owner_pid=os.getpid(),
        owner_started=start_time(os.getpid()),
        run_id=run_id,
        accel=fleet.accel,
        created=time.time(),
        last_test=last_test,
        nodes=nodes,
        switches=switches,
    )


# -- driving a node of a kept fleet ---------------------------------------------------------------


class NodeBusy(FleetStateError):
    pass


class NodeLock:
    """Held by whoever drives a node; says who that is."""

    def __init__(self, node_dir: Path, node: str) -> None:
        self.path = Path(node_dir) / "attach.lock"
        self.node = node
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, holder: str) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise NodeBusy(
                f"node {self.node} is in use by {who}: QEMU serves its console to one client at a "
                "time. Detach that session first (Ctrl-] in `deploy-harness shell`; a paused "
                "pytest lets go of its nodes while it waits for Enter)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def machine_for(node: NodeRecord) -> Machine:
    """A Machine handle for a running node of a kept fleet (not attached yet)."""
    machine = Machine(
        node.name,
        Path(node.start_script),
        Path(node.state_dir),
        vlans={n: Path(p) for n, p in node.vlans.items()},
        allow_reboot=node.allow_reboot,
        accel=node.accel,
        boot_timeout=node.boot_timeout,
        leash=False,
        reattachable=True,
        backdoor_token=node.token,
    )
    machine.forwards = [PortForward(guest, host) for guest, host in node.forwards]
    return machine


@contextlib.contextmanager
def attached(record: FleetRecord, node_name: str, holder: str, resync: bool = True) -> Iterator[Machine]:
    """Drive one node of a kept fleet: lock it, attach, yield its Machine; detach at the end
    (QEMU runs on)."""
    require_usable(record)
    node = record.node(node_name)
    if not node.running:
        raise FleetStateError(
            f"node {node_name} of fleet {record.name} is not running (its QEMU, pid {node.pid}, "
            f"has exited). See why with `deploy-harness logs {node_name} --fleet {record.name}`; "
            f"start the fleet afresh with `deploy-harness down --fleet {record.name}` and `up`."
        )
    lock = NodeLock(Path(node.state_dir), node_name)
    lock.acquire(holder)
    try:
        machine = machine_for(node)
        assert node.pid is not None and node.started is not None
        machine.attach(AdoptedProcess(node.pid, node.started), timeout=ATTACH_TIMEOUT, resync=resync)
        try:
            yield machine
        finally:
            machine.detach()
    finally:
        lock.release()


class KeptFleet:
    """A keep-mode Fleet this process booted: writes its state file and holds its node locks
    while this process drives it; lets go of it (and takes it back) for other processes."""

    def __init__(self, fleet: "Fleet", origin: str, run_id: str | None = None) -> None:
        self.fleet = fleet
        self.origin = origin
        self.run_id = run_id
        self.last_test: str | None = None
        self.locks = {m.name: NodeLock(m.state_dir, m.name) for m in fleet}

    @property
    def name(self) -> str:
        return self.fleet.state_dir.name

    def save(self, last_test: str | None = None) -> None:
        if last_test is not None:
            self.last_test = last_test
        record_of(self.fleet, self.origin, self.run_id, self.last_test).write()

    def hold(self) -> None:
        for lock in self.locks.values():
            lock.acquire(self.origin)

    def let_go(self) -> None:
        """Save the state, detach every node and release the locks; QEMU runs on."""
        self.save()
        for machine in self.fleet:
            machine.detach()
        for lock in self.locks.values():
            lock.release()

    def take_back(self) -> None:
        """Lock and reattach every running node (after let_go)."""
        self.hold()
        for machine in self.fleet:
            if machine.booted:
                machine.attach(timeout=ATTACH_TIMEOUT)


# -- stopping ------------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def leftover_processes(directory: Path) -> list[tuple[int, int]]:
    """(pid, start time) of QEMU, vde_switch and start-script processes whose command line
    names a path in `directory` (also those of an interrupted boot that no state file lists)."""
    inside = str(directory).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or not any(inside in arg for arg in argv):
            continue
        program = os.path.basename(argv[0])
        start_script = any(arg.startswith(inside) and re.search(r"/run-[^/]+-vm$", arg) for arg in argv)
        if program.startswith("qemu") or program == "vde_switch" or start_script:
            started = start_time(int(entry.name))
            if started is not None:
                found.append((int(entry.name), started))
    return found


def stop(directory: Path) -> list[int]:
    """End every process of the fleet in `directory` (SIGTERM, then SIGKILL), each checked by
    pid and start time, and remove the directory. Returns the pids that were ended."""
    record = read(directory)
    targets = {(r.pid, r.started) for r in [*record.nodes.values(), *record.switches] if r.running}
    targets |= set(leftover_processes(directory))
    ended = sorted(pid for pid, _ in targets if pid)
    survivors = terminate(targets)
    if survivors:
        raise FleetStateError(f"could not stop pids {survivors} of fleet {directory.name}; its state stays in {directory}")
    shutil.rmtree(directory, ignore_errors=True)
    return ended

