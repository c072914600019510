"""`deploy-harness up --twins A,B`: the twin fleet as a kept fleet (docs/twins.md, "Booting
twins"). The names are checked against the folders of hosts/ first, then what this machine
lacks (Nix >= 2.18, KVM unless --accel tcg) refuses the boot with every missing piece named;
only then are the hosts evaluated (`twinFacts`) and the spec made. After the fleet boots, each
twin gets the test host key and re-runs its activation (harness/twins/twin_fleet.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..fleet import Fleet
from ..images.nixos import default_flake
from ..specs import FleetSpec
from . import fleet_spec, requirements, twin_fleet


class TwinsRefused(RuntimeError):
    """The twins cannot be booted here, or the request names no twin fleet; the message says why."""


@dataclass(frozen=True)
class TwinSetup:
    spec: FleetSpec
    after_boot: Callable[[Fleet], None]


def setup(text: str, accel: str, *, flake: str | None = None, name: str | None = None,
          device: str = requirements.KVM_DEVICE) -> TwinSetup:
    flake = flake or default_flake()
    try:
        hosts = fleet_spec.parse_twins(text, fleet_spec.host_folders(Path(flake)))
    except fleet_spec.TwinsError as error:
        raise TwinsRefused(str(error)) from None
    missing = requirements.missing(accel, device)
    if missing:
        lines = "\n".join(f"  - {problem}" for problem in missing)
        raise TwinsRefused(f"cannot boot the twins of {', '.join(hosts)} on this machine; nothing was booted:\n{lines}")
    try:
        spec = fleet_spec.twin_spec(fleet_spec.read_facts(flake), hosts, flake=flake, name=name or "twins")
    except fleet_spec.TwinsError as error:
        raise TwinsRefused(str(error)) from None
    twins = [node for node in spec.nodes if node != fleet_spec.DEPLOYER]
    return TwinSetup(spec, lambda fleet: twin_fleet.prepare(fleet, twins))
