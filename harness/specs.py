"""What a fleet is made of, as data: its nodes (NodeSpec), the network they form (FleetSpec) and
where their start scripts come from (the Image protocol). The lowest layer: imports nothing of
the harness; images implement Image, the fleet boots a FleetSpec."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence

# A fleet's name names its directories (`ndh-<name>-XXXX` in the state root, `<name>` among
# kept fleets), its xdist group and `deploy-harness --fleet NAME`.
FLEET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
FLEET_NAME_RULE = "letters, digits, '_', '.', '-', at most 40 characters, starting with a letter or digit"
# A node's name is its host name (the NixOS test framework sets networking.hostName to it, and
# NixOS accepts a DNS label, or underscores too: nixpkgs nixos/modules/tasks/network-interfaces.nix)
# and the name of its directory in the fleet's state.
NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
NODE_NAME_RULE = (
    "a host name as NixOS accepts it: letters, digits, '-' and '_', at most 63 characters, "
    "starting and ending with a letter or digit"
)


def check_fleet_name(name: object) -> str:
    """`name` if it is usable as a fleet name; else ValueError naming the rule."""
    if not isinstance(name, str) or not FLEET_NAME.fullmatch(name):
        raise ValueError(f"fleet name {name!r} is not usable: {FLEET_NAME_RULE}")
    return name


def check_node_names(fleet: str, names: Sequence[object]) -> None:
    """ValueError naming the rule unless every node name is a host name NixOS accepts, and no
    two differ only in case (host names do not)."""
    for name in names:
        if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
            raise ValueError(
                f"fleet {fleet}: node name {name!r} is not usable: it becomes the node's host name "
                f"and the name of its state directory, so it must be {NODE_NAME_RULE}"
            )
    seen: dict[str, str] = {}
    for name in sorted(names):  # type: ignore[type-var]  # all str by now
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ValueError(f"fleet {fleet}: node names {other!r} and {name!r} differ only in case: as host names they are one")


@dataclass(frozen=True)
class NodeSpec:
    vlans: tuple[int, ...] = (1,)
    memory_mb: int = 128
    allow_reboot: bool = False
    forward_ports: tuple[int, ...] = ()


class Image(Protocol):
    """Where a fleet's start scripts come from: the micro image (harness.images.micro) or NixOS
    nodes built by Nix (harness.images.nixos). Must be hashable (a frozen dataclass): fleets
    are reused per spec."""

    def start_scripts(
        self, spec: "FleetSpec", state_dir: Path, progress: Callable[[str], None]
    ) -> dict[str, Path]:
        """One `run-<name>-vm` script per node of `spec`, built or written under `state_dir`.
        VLAN sockets are passed to the scripts as QEMU_VDE_SOCKET_<n> for each VLAN the
        node's NodeSpec lists."""
        ...

    def accel_options(self, accel: str) -> Sequence[str]:
        """The QEMU options that make this image's start scripts use `accel` ("kvm"/"tcg")."""
        ...

    @property
    def snapshot_drive(self) -> Optional[str]:
        """The id of the start scripts' `-drive` that QEMU saves snapshots' memory to (the
        first drive that can snapshot), or None; the engine tunes its I/O."""
        ...


@dataclass(frozen=True)
class FleetSpec:
    """A network of nodes. Hashable: the plugin boots one fleet per spec and reuses it."""

    name: str
    nodes: Mapping[str, NodeSpec] = field(hash=False)
    image: Optional[Image] = None  # None: the micro image

    def __post_init__(self) -> None:
        """Names are checked where they are declared: a node called `../x` would put its disk
        and sockets outside the fleet's directory, one with a space breaks QEMU's options."""
        check_fleet_name(self.name)
        check_node_names(self.name, list(self.nodes))

    def __hash__(self) -> int:
        return hash((self.name, self.image, tuple(sorted(self.nodes.items()))))

    def node_numbers(self) -> dict[str, int]:
        """The NixOS test framework's numbering: alphabetical position, from 1."""
        return {name: number for number, name in enumerate(sorted(self.nodes), 1)}

    def addresses(self) -> dict[str, str]:
        """Each node's address on its first VLAN, as /etc/hosts lists it."""
        numbers = self.node_numbers()
        return {
            name: f"192.168.{spec.vlans[0]}.{numbers[name]}"
            for name, spec in self.nodes.items()
            if spec.vlans
        }
