"""Which nodes a twin fleet has and where their start scripts come from (docs/twins.md,
"Booting twins"): the chosen hosts' twins, the cache host's twin when the fleet has one, and the
twins' deployer, all on VLAN 1, each twin at its host's address (homelab.twin.addresses).

Everything is read from the evaluated hosts, through the flake output `twinFacts`
(lib/twin-facts.nix), never guessed from file names; the start scripts are the twins'
`system.build.vm` and the deployer's (`twinDeployer`, twins/deployer.nix), built by one
`nix build`, the way harness/images/nixos.py builds the NixOS test nodes."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import nix
from ..images.nixos import REASON_LINES, build_start_scripts, default_flake
from ..specs import FleetSpec, NodeSpec

DEPLOYER = "deployer"
VLAN = 1
DEPLOYER_MEMORY_MIB = 4096
FACTS_OUTPUT = "twinFacts"


class TwinsError(ValueError):
    """A --twins request that names no usable twin fleet; the message says why."""


@dataclass(frozen=True)
class TwinFacts:
    """One host's facts as lib/twin-facts.nix gives them."""

    address: str
    stand_in: bool
    deployable: bool
    cache: bool
    memory_mib: int
    target_host: str
    ssh_user: str = "deploy"
    confirm_timeout: int = 30
    cache_url: str | None = None
    cache_public_key_file: str | None = None
    deploy_trust: str | None = "trusted-user"
    acme: bool = False


def facts_from_json(data: Mapping[str, Any]) -> dict[str, TwinFacts]:
    try:
        return {
            host: TwinFacts(str(f["address"]), bool(f["standIn"]), bool(f["deployable"]), bool(f["cache"]),
                            int(f["memoryMiB"]), str(f["targetHost"]), str(f["sshUser"]), int(f["confirmTimeout"]),
                            _text_or_none(f["cacheUrl"]), _text_or_none(f["cachePublicKeyFile"]),
                            _text_or_none(f["deployTrust"]), bool(f["acme"]))
            for host, f in data.items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise TwinsError(f"the flake's {FACTS_OUTPUT} output is not what lib/twin-facts.nix gives: {exc!r}") from exc


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def read_facts(flake: str, *, nix_executable: str | None = None, timeout: float = 600) -> dict[str, TwinFacts]:
    """`nix eval --json <flake>#twinFacts`, offline (no substituter, no flake registry)."""
    try:
        data = nix.eval_json(f"{flake}#{FACTS_OUTPUT}", nix=nix_executable, timeout=timeout,
                             options=nix.OFFLINE_OPTIONS)
    except nix.NixError as exc:
        excerpt = "\n".join(exc.excerpt.splitlines()[:REASON_LINES])
        raise TwinsError(f"cannot evaluate {flake}#{FACTS_OUTPUT}: {excerpt}") from exc
    return facts_from_json(data)


def host_folders(repo: Path) -> list[str]:
    """The fleet's hosts: the folders of hosts/ (docs/fleet.md, "Adding a host")."""
    hosts = repo / "hosts"
    if not hosts.is_dir():
        raise TwinsError(f"{repo} has no hosts/ folder: is it this fleet's flake?")
    return sorted(p.name for p in hosts.iterdir() if p.is_dir())


def parse_twins(text: str, known: Sequence[str]) -> list[str]:
    """`Development,Production` -> ["Development", "Production"], each a folder of hosts/,
    spelled exactly so; none twice."""
    names = [word.strip() for word in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise TwinsError(f"--twins {text!r}: give host names separated by commas, e.g. --twins {','.join(known[:2])}")
    unknown = [name for name in names if name not in known]
    if unknown:
        hints = [f"{name} (did you mean {match}?)" if (match := _case_match(name, known)) else name for name in unknown]
        raise TwinsError(f"--twins: no host named {', '.join(hints)}; hosts (folders of hosts/): {', '.join(known)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TwinsError(f"--twins: {', '.join(repeated)} named twice")
    if DEPLOYER in names:
        raise TwinsError(f"--twins: a host named {DEPLOYER!r} would clash with the twins' deployer node")
    return names


def _case_match(name: str, known: Sequence[str]) -> str | None:
    return next((k for k in known if k.lower() == name.lower()), None)


def chosen_nodes(facts: Mapping[str, TwinFacts], requested: Sequence[str]) -> list[str]:
    """The requested twins plus every cache host's twin (a deploy that uses the cache needs
    it on the VLAN), in the request's order, then the cache."""
    missing = [host for host in requested if host not in facts]
    if missing:
        raise TwinsError(f"the flake's {FACTS_OUTPUT} has no {', '.join(missing)} (hosts: {', '.join(sorted(facts))})")
    caches = sorted(host for host, f in facts.items() if f.cache and host not in requested)
    return list(requested) + caches


def twin_spec(facts: Mapping[str, TwinFacts], requested: Sequence[str], *, flake: str | None = None,
              name: str = "twins") -> FleetSpec:
    hosts = chosen_nodes(facts, requested)
    addresses = {facts[h].address: h for h in hosts}
    if len(addresses) != len(hosts):
        raise TwinsError(f"two twins share an address: {', '.join(f'{h} {facts[h].address}' for h in hosts)}")
    nodes = {host: NodeSpec(vlans=(VLAN,), memory_mb=facts[host].memory_mib, allow_reboot=True) for host in hosts}
    nodes[DEPLOYER] = NodeSpec(vlans=(VLAN,), memory_mb=DEPLOYER_MEMORY_MIB, forward_ports=(22,))
    image = TwinImage(flake=flake or default_flake(), hosts=tuple(hosts))
    return FleetSpec(name, nodes, image=image)


# -- the image: nix builds the twins' and the deployer's VMs -------------------------------------


@dataclass(frozen=True)
class TwinImage:
    """The start scripts of twins and their deployer. Hashable, as fleets are reused per spec."""

    flake: str = field(default_factory=default_flake)
    hosts: tuple[str, ...] = ()
    build_timeout: float | None = None
    nix_options: tuple[tuple[str, str], ...] = tuple(nix.OFFLINE_OPTIONS.items())

    def installable(self, node: str) -> str:
        if node == DEPLOYER:
            return f"{self.flake}#twinDeployer.config.system.build.vm"
        return f"{self.flake}#nixosConfigurations.{node}.config.system.build.vm"

    def start_scripts(self, spec: FleetSpec, state_dir: Path, progress: Callable[[str], None]) -> dict[str, Path]:
        return build_twin_vms(self, tuple(sorted(spec.nodes)), progress)

    def accel_options(self, accel: str) -> tuple[str, ...]:
        return ("-machine", f"accel={accel}")  # as harness/images/nixos.py says why

    @property
    def snapshot_drive(self) -> str:
        return "drive1"  # the root disk, first (test/fleet/nodes/snapshottable.nix, via twins/vm.nix)


_lock = threading.Lock()
_built: dict[tuple[TwinImage, tuple[str, ...]], dict[str, Path]] = {}


def build_twin_vms(image: TwinImage, nodes: tuple[str, ...], progress: Callable[[str], None]) -> dict[str, Path]:
    """Each node's `run-<node>-vm`; NixosImageUnavailable with nix's first error lines when nix
    cannot build them (a failure is not cached: the user fixes the flake and tries again)."""
    with _lock:
        if (image, nodes) in _built:
            return _built[(image, nodes)]
    progress(f"building the twins {', '.join(nodes)} with nix from {image.flake} (the first build takes long)")
    scripts = build_start_scripts([image.installable(n) for n in nodes], nodes, "the twins",
                                  options=dict(image.nix_options), timeout=image.build_timeout, progress=progress)
    with _lock:
        _built[(image, nodes)] = scripts
    return scripts
