"""A new kept fleet: claiming its name (its directory, marked as booting by this process) and
the record of a booted Fleet."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..vm.adopted import start_time
from .errors import FleetStateError
from .paths import check_name, dir_name_for, fleets_root, private_root
from .records import FleetRecord, NodeRecord, SwitchRecord, read

if TYPE_CHECKING:
    from ..fleet import Fleet


def claim(name: str, origin: str, run_id: str | None = None) -> Path:
    """Create the directory of a new fleet `name`, marked as booting by this process."""
    check_name(name)
    directory = private_root() / name
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        health = read(directory).health()
        advice = "its logs are kept until you remove it" if health.state == "stale" else "use it, or stop it"
        advice += f" with `deploy-harness down --fleet {name}`"
        detail = f": {health.detail}" if health.detail else ""
        raise FleetStateError(
            f"a fleet named {name} exists already ({health.state}{detail}); {advice}. "
            "Or pick another name with --name."
        ) from None
    FleetRecord(
        name, directory, origin=origin, owner_pid=os.getpid(), owner_started=start_time(os.getpid()),
        run_id=run_id, created=time.time(),
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
    nodes = {
        machine.name: NodeRecord(
            name=machine.name,
            pid=machine.pid,
            started=start_time(machine.pid) if machine.pid else None,
            state_dir=str(machine.state_dir),
            start_script=str(machine.start_script),
            token=machine.backdoor_token,
            vlans={n: str(p) for n, p in machine.vlans.items()},
            allow_reboot=machine.allow_reboot,
            accel=machine.accel,
            forwards=[(f.guest_port, f.host_port) for f in machine.forwards],
            boot_timeout=machine.boot_timeout,
            accel_options=list(machine.accel_options),
            time_scale=machine.time_scale,
            snapshot_drive=machine.snapshot_drive,
        )
        for machine in fleet
    }
    switches = [
        SwitchRecord(number, switch.pid, start_time(switch.pid) if switch.pid else None)
        for number, switch in sorted(fleet.switches.items())
    ]
    return FleetRecord(
        name=fleet.state_dir.name, directory=fleet.state_dir, status="up", origin=origin,
        owner_pid=os.getpid(), owner_started=start_time(os.getpid()), run_id=run_id, accel=fleet.accel,
        created=time.time(), last_test=last_test, nodes=nodes, switches=switches,
    )
