"""NixOS nodes built by Nix from test/vm-test.nix: the `Image` a NixOS fleet boots.

Layer 2 (docs/architecture.md). `NixosTestImage.start_scripts` builds the nodes' VMs with one
`nix build` of `<flake>#vmChecks.<system>.vm-test.nodes.<node>.system.build.vm` (runNixOSTest
exposes the evaluated nodes as `.nodes`; nixpkgs nixos/lib/testing/nodes.nix, passthru.nodes)
and returns a small wrapper per node around the `run-<node>-vm` script Nix built.

Whether Nix can build the nodes at all is decided once per process (`availability`): the
scenarios skip with nix's own first error lines when it cannot (no nix, offline, no `kvm`
system feature), instead of failing every test the same way.

The accelerator: nixpkgs' start scripts pick their own, in the `-machine accel=` form: older
nixpkgs run `qemu-kvm -cpu max`, where the qemu package's `qemu-kvm` wrapper adds `-enable-kvm`
whenever /dev/kvm exists (pkgs/applications/virtualization/qemu/default.nix), and `-enable-kvm`
is QEMU's shorthand for `-machine accel=kvm`; newer nixpkgs run `qemu-system-x86_64 -machine
accel=kvm:tcg -cpu max` (nixos/lib/qemu-common.nix, qemuBinary). Either way KVM is tried whenever
/dev/kvm exists, whether or not it works. QEMU refuses to combine the engine's default `-accel X`
with `-machine accel=` ("The -accel and "-machine accel=" options are incompatible", QEMU 7.2),
but merges repeated `-machine` options with the last `accel=` winning, and QEMU_OPTS comes after
nixpkgs' own flags. So this image asks the engine for `-machine accel=X` (`accel_options`): X
becomes the only accelerator QEMU tries, and --vm-accel=tcg really is TCG
(tests/nixos/test_nixos_image_accel.py checks this with QEMU and scripts shaped like nixpkgs').
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from .. import nix
from .prebuilt import ENV as PREBUILT_ENV, prebuilt_scripts

if TYPE_CHECKING:  # the fleet imports images, not the other way round at run time
    from ..specs import FleetSpec

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SYSTEM = "x86_64-linux"
DEFAULT_CHECK = "vm-test"
# How many lines of nix's error a skip reason carries.
REASON_LINES = 4


def default_flake() -> str:
    """The flake the nodes come from: `$NDH_FLAKE`, else this repository (a git checkout:
    flakes see tracked files only, so `git add` new files before building). An installed
    harness (the flake's package) is no checkout: then the current directory, which the
    flake's apps also pass as $NDH_FLAKE."""
    explicit = os.environ.get("NDH_FLAKE")
    if explicit:
        return explicit
    if (REPO / "flake.nix").exists():
        return str(REPO)
    return os.getcwd()


class NixosImageUnavailable(RuntimeError):
    """Nix cannot provide the NixOS nodes here; `reason` is what a skip says."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


@dataclass(frozen=True)
class NixosTestImage:
    """The nodes of a runNixOSTest check of a flake. Hashable: fleets are reused per spec."""

    flake: str = field(default_factory=default_flake)
    check: str = DEFAULT_CHECK
    system: str = DEFAULT_SYSTEM
    build_timeout: float | None = None  # None: as long as the first build takes
    # Extra nix settings for the build, e.g. (("builders", "ssh://kvm-box x86_64-linux"),).
    nix_options: tuple[tuple[str, str], ...] = ()

    def installable(self, node: str) -> str:
        return f"{self.flake}#vmChecks.{self.system}.{self.check}.nodes.{node}.system.build.vm"

    def start_scripts(
        self, spec: "FleetSpec", state_dir: Path, progress: Callable[[str], None]
    ) -> dict[str, Path]:
        vms = build_vms(self, tuple(sorted(spec.nodes)), progress)
        return {name: vms[name] for name in spec.nodes}

    def accel_options(self, accel: str) -> tuple[str, ...]:
        return ("-machine", f"accel={accel}")

    @property
    def snapshot_drive(self) -> str:
        # qemu-vm.nix names its drives drive1, drive2, ... in list order, and puts them before its
        # other options (the UEFI pflash drives): the root disk, first (checked by
        # test/fleet/nodes/snapshottable.nix), holds the snapshots.
        return "drive1"


# -- building, once per process ------------------------------------------------------------

_lock = threading.Lock()
_verdicts: dict[tuple[NixosTestImage, tuple[str, ...]], dict[str, Path] | NixosImageUnavailable] = {}


def build_vms(
    image: NixosTestImage,
    nodes: Sequence[str],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Path]:
    """Each node's `run-<node>-vm` script, built by nix; raises NixosImageUnavailable with the
    reason (nix's first error lines) when nix cannot. Tried once per process: the verdict, good
    or bad, is cached."""
    key = (image, tuple(sorted(nodes)))
    with _lock:
        if key not in _verdicts:
            _verdicts[key] = _build(image, key[1], progress)
        verdict = _verdicts[key]
    if isinstance(verdict, NixosImageUnavailable):
        raise verdict
    return verdict


def availability(
    image: NixosTestImage,
    nodes: Sequence[str],
    progress: Callable[[str], None] = lambda _: None,
) -> Availability:
    try:
        vms = build_vms(image, nodes, progress)
    except NixosImageUnavailable as exc:
        return Availability(False, exc.reason)
    return Availability(True, f"nix built {len(vms)} NixOS test node(s) ({', '.join(sorted(vms))})")


def forget_verdicts() -> None:
    """Drop cached build verdicts (tests; or after fixing the flake in a long session)."""
    with _lock:
        _verdicts.clear()


def _build(
    image: NixosTestImage, nodes: tuple[str, ...], progress: Callable[[str], None]
) -> dict[str, Path] | NixosImageUnavailable:
    prebuilt = prebuilt_scripts(nodes)
    if prebuilt is not None:  # already built, e.g. as inputs of a Nix check: no nix here
        progress(f"NixOS test nodes {', '.join(nodes)}: the start scripts of ${PREBUILT_ENV}, no nix build")
        return prebuilt
    progress(
        f"building the NixOS test nodes {', '.join(nodes)} with nix "
        f"({image.flake}#vmChecks.{image.system}.{image.check}; the first build takes long, "
        "nix's progress follows)"
    )
    try:
        return build_start_scripts([image.installable(node) for node in nodes], nodes, "the NixOS test nodes",
                                   options=dict(image.nix_options), timeout=image.build_timeout,
                                   progress=progress)
    except NixosImageUnavailable as exc:
        return exc


def build_start_scripts(
    installables: Sequence[str],
    nodes: Sequence[str],
    what: str,
    *,
    options: Mapping[str, str],
    timeout: float | None,
    progress: Callable[[str], None],
) -> dict[str, Path]:
    """One `nix build` of the installables; each node's `run-<node>-vm` among the outputs.
    Raises NixosImageUnavailable with the reason: no nix, a nix too old for current nixpkgs
    (checked first: an old nix fails on nixpkgs unhelpfully), or nix's first error lines."""
    try:
        executable = nix.find_nix()
        old = nix.too_old(executable)
    except nix.NixUnavailable as exc:
        raise NixosImageUnavailable(f"no nix: {exc}") from exc
    if old is not None:
        raise NixosImageUnavailable(old)
    try:
        outputs = nix.build(installables, nix=executable, timeout=timeout, options=options,
                            progress=lambda line: progress(f"nix: {line}"))
    except nix.NixError as exc:
        lines = [line for line in exc.excerpt.splitlines() if not line.startswith("(use '--show-trace'")]
        excerpt = "\n".join(lines[:REASON_LINES]) or "(no output on stderr)"
        raise NixosImageUnavailable(
            f"nix cannot build {what} ({exc.kind.name}): {excerpt}\n"
            f"What to do: {exc.kind.hint}"
        ) from exc
    scripts = _scripts_by_node(outputs, nodes)
    if isinstance(scripts, NixosImageUnavailable):
        raise scripts
    return scripts


def _scripts_by_node(outputs: Sequence[str], nodes: Sequence[str]) -> dict[str, Path] | NixosImageUnavailable:
    """Map nix's outputs to nodes by the script each holds (`bin/run-<node>-vm`, qemu-vm.nix)."""
    found: dict[str, Path] = {}
    for output in outputs:
        for script in sorted(Path(output, "bin").glob("run-*-vm")):
            found[script.name[len("run-") : -len("-vm")]] = script
    missing = [node for node in nodes if node not in found]
    if missing:
        return NixosImageUnavailable(
            f"nix built {list(outputs)} but no bin/run-<node>-vm for {', '.join(missing)}: are "
            "those nodes of the test, and is each node's networking.hostName its node name?"
        )
    return {node: found[node] for node in nodes}
