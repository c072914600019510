"""What a fleet is made of, as data: its nodes (NodeSpec), the network they form (FleetSpec) and
where their start scripts come from (the Image protocol). The lowest layer: imports nothing of
the harness; images implement Image, the fleet boots a FleetSpec."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence


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
