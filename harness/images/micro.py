"""The micro image: a kernel and a busybox + bash initramfs that speaks the NixOS backdoor
protocol. Two recipes, same guest scripts (micro_guest/) and same layout (vmlinuz, initrd,
disk-base.qcow2, manifest.json): built here from Debian packages on first use and cached by its
inputs, or built by Nix (nix/micro-image.nix, the flake's `micro-image` package) and named by
`$NDH_MICRO_IMAGE`, which the flake's apps and dev shell set.

Each node gets a generated start script with the `run-<name>-vm` interface of NixOS's
qemu-vm.nix, so the engine drives a micro node and a NixOS node through the same code path.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import debian, host_tools, kmod
from .cachedir import cache_root, locked

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
GUEST_FILES = Path(__file__).with_name("micro_guest")
# virtio transport, the backdoor console, VLAN NICs and the persistent disk.
MODULES = ["virtio_pci", "virtio_console", "virtio_net", "virtio_blk"]
# Shipped, loaded by init only when booted through UEFI (the EFI variable file system).
UEFI_MODULES = ["efivarfs"]
DISK_SIZE_MB = 64
QBOOT = Path("/usr/share/qemu/qboot.rom")
# Debian's `ovmf` package: the UEFI firmware (read-only) and the template of its variable store.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Bump when the build recipe changes in a way the inputs below do not capture.
RECIPE_VERSION = "2"


PREBUILT_ENV = "NDH_MICRO_IMAGE"
# The tools of the Debian recipe; without them the image must come from Nix.
DEBIAN_TOOLS = ("apt-cache", "apt-get", "dpkg-deb", "dpkg-query")
# What building the image runs on the host (host_tools.find: on PATH or in an sbin directory,
# where Debian puts mke2fs, off a user's PATH), and the static guest binaries it copies.
BUILD_TOOLS = ("cpio", "mke2fs", "qemu-img", "/bin/busybox", "/bin/bash-static")
HOW_TO_GET_ONE = (
    "use the Nix-built image: `nix run .#scenarios`, or `nix develop` (both set "
    f"{PREBUILT_ENV}), or `export {PREBUILT_ENV}=$(nix build .#micro-image --no-link "
    "--print-out-paths)`; on Debian, run ci/bootstrap"
)


class MicroImageError(RuntimeError):
    """The micro image could not be built."""


@dataclass(frozen=True)
class MicroImage:
    directory: Path
    kernel: Path
    initrd: Path
    base_disk: Path
    bios: Path | None
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class MicroNode:
    """What one micro node's start script bakes in (a NixOS node has these in its system)."""

    name: str
    number: int
    vlans: Sequence[int] = ()
    hosts: Mapping[str, str] | None = None  # host name -> address for /etc/hosts
    memory_mb: int = 128


def image_inputs() -> dict[str, str]:
    """Everything the image is built from; the cache key is their hash."""
    guest = hashlib.sha256()
    for path in sorted(GUEST_FILES.iterdir()):
        guest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    kernel_package = debian.resolve_dependency(KERNEL_METAPACKAGE, "linux-image-")
    return {
        "recipe": RECIPE_VERSION,
        "kernel_package": kernel_package,
        "kernel_version": debian.candidate_version(kernel_package),
        "busybox_static": debian.installed_version("busybox-static"),
        "bash_static": debian.installed_version("bash-static"),
        "qboot": "yes" if QBOOT.exists() else "no",
        "guest_files": guest.hexdigest(),
    }


def image_dir(inputs: Mapping[str, str]) -> Path:
    key = hashlib.sha256(json.dumps(dict(inputs), sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "micro-image" / key


def missing_reason(progress: Callable[[str], None] = lambda _: None) -> str | None:
    """Why the micro image cannot be had here (neither $NDH_MICRO_IMAGE nor the Debian recipe),
    or None once it is ready, built if need be."""
    try:
        ensure_micro_image(progress)
    except (MicroImageError, debian.DebianPackageError) as exc:
        return str(exc) or type(exc).__name__
    return None


def ensure_micro_image(progress: Callable[[str], None] = lambda _: None) -> MicroImage:
    """The micro image: the prebuilt one named by $NDH_MICRO_IMAGE, else the cached Debian-built
    one for the current inputs, building it first if needed."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        return load_prebuilt(Path(prebuilt))
    missing = host_tools.missing(DEBIAN_TOOLS)
    if missing:
        raise MicroImageError(
            f"no micro image: {PREBUILT_ENV} is not set and the Debian recipe needs "
            f"{', '.join(missing)} (not on PATH): {HOW_TO_GET_ONE}"
        )
    inputs = image_inputs()
    directory = image_dir(inputs)
    with locked(directory.parent / ".build.lock"):
        if not (directory / "manifest.json").exists():
            progress(f"building the micro image in {directory} (once per set of inputs)")
            _build(directory, inputs, progress)
    return load(directory)


def load(directory: Path) -> MicroImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    bios = manifest.get("bios")
    return MicroImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd",
        base_disk=directory / "disk-base.qcow2",
        bios=Path(bios) if bios else None,
        inputs=manifest["inputs"],
    )


def load_prebuilt(directory: Path) -> MicroImage:
    """An image built elsewhere (by Nix): checked for the layout and for guest scripts equal to
    this checkout's, since a node's behaviour comes from them."""
    where = f"{PREBUILT_ENV}={directory}"
    missing = [name for name in ("vmlinuz", "initrd", "disk-base.qcow2", "manifest.json")
               if not (directory / name).is_file()]
    if missing:
        raise MicroImageError(f"{where} is not a micro image (no {', '.join(missing)}): {HOW_TO_GET_ONE}")
    stale = [path.name for path in sorted(GUEST_FILES.iterdir())
             if not (directory / "guest" / path.name).is_file()
             or (directory / "guest" / path.name).read_bytes() != path.read_bytes()]
    if stale:
        raise MicroImageError(
            f"{where} was built from other guest scripts than {GUEST_FILES} ({', '.join(stale)} "
            f"differ): rebuild it from this checkout ({HOW_TO_GET_ONE})"
        )
    return load(directory)


def missing_build_tools() -> list[str]:
    """The build tools and guest binaries this host lacks (empty when the image can be built)."""
    return host_tools.missing(BUILD_TOOLS)


def _build(directory: Path, inputs: Mapping[str, str], progress: Callable[[str], None]) -> None:
    missing = missing_build_tools()
    if missing:
        raise MicroImageError(
            f"building the micro image needs {', '.join(f'`{tool}`' for tool in missing)} (looked for "
            f"on PATH and in {', '.join(host_tools.SBIN_DIRS)}): run ci/bootstrap, or {HOW_TO_GET_ONE}"
        )
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
    try:
        progress(f"downloading {inputs['kernel_package']} {inputs['kernel_version']}")
        kernel_root = debian.download_and_unpack(inputs["kernel_package"], staging / "kernel")
        vmlinuz = next((kernel_root / "boot").glob("vmlinuz-*"))
        shutil.copy(vmlinuz, staging / "vmlinuz")
        progress("assembling the initramfs")
        _write_initramfs(staging / "initrd", kernel_root, staging / "tree")
        shutil.copytree(GUEST_FILES, staging / "guest")  # the layout the Nix recipe has too
        progress("formatting the persistent disk template")
        _write_base_disk(staging / "disk-base.qcow2", staging / "disk.raw")
        manifest = {"inputs": dict(inputs), "bios": str(QBOOT) if QBOOT.exists() else None}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(staging / "kernel")
        shutil.rmtree(staging / "tree")
        (staging / "disk.raw").unlink()
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_initramfs(target: Path, kernel_root: Path, tree: Path) -> None:
    for sub in ("bin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "persist"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    shutil.copy("/bin/bash-static", tree / "bin" / "bash")
    applets = subprocess.run(
        [str(tree / "bin" / "busybox"), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if not (tree / "bin" / applet).exists():
            (tree / "bin" / applet).symlink_to("busybox")
    shutil.copy(GUEST_FILES / "init", tree / "init")
    for name in ("inittab", "backdoor", "rc.shutdown"):
        shutil.copy(GUEST_FILES / name, tree / "etc" / name)

    modules_dir = next((kernel_root / "lib" / "modules").iterdir())
    index = kmod.module_index(modules_dir)
    order = kmod.load_order(MODULES, index)
    (tree / "lib" / "modules").mkdir(parents=True)
    for name in order:
        shutil.copy(index[name], tree / "lib" / "modules" / f"{name}.ko")
    (tree / "etc" / "modules.load").write_text("".join(f"{name}\n" for name in order))
    for name in UEFI_MODULES:  # absent when built into the kernel: init then just mounts
        if name in index:
            shutil.copy(index[name], tree / "lib" / "modules" / f"{name}.ko")

    # Uncompressed and reproducible: the kernel unpacks it fastest, and its hash is stable.
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    for rel in files:
        os.utime(tree / rel, (0, 0), follow_symlinks=False)
    with open(target, "wb") as out:
        subprocess.run(
            [_tool("cpio"), "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
            input="\n".join(["."] + files).encode(),
            cwd=tree,
            stdout=out,
            check=True,
        )


def _write_base_disk(target: Path, raw: Path) -> None:
    with open(raw, "wb") as handle:
        handle.truncate(DISK_SIZE_MB * 1024 * 1024)
    subprocess.run([_tool("mke2fs"), "-q", "-F", "-t", "ext4", "-L", "persist", str(raw)], check=True)
    subprocess.run([_tool("qemu-img"), "convert", "-q", "-O", "qcow2", str(raw), str(target)], check=True)


def _tool(name: str) -> str:
    """A build tool's path (_build checked that each one is there before anything ran)."""
    return host_tools.find(name) or name


def mac_address(vlan: int, node: int) -> str:
    """The NixOS test framework's MAC scheme (qemu-common.nix qemuNicMac)."""
    return f"52:54:00:12:{vlan:02x}:{node:02x}"


def kernel_params(node: MicroNode) -> str:
    hosts = ",".join(f"{name}={addr}" for name, addr in sorted((node.hosts or {}).items()))
    params = [
        "console=ttyS0",
        "panic=1",
        "quiet",
        # Freed pages are zeroed, so snapshots skip them: 93 -> 55 MiB of saved memory per node.
        "init_on_free=1",
        f"ndh.name={node.name}",
        f"ndh.node={node.number}",
        f"ndh.vlans={','.join(str(v) for v in node.vlans)}",
    ]
    if hosts:
        params.append(f"ndh.hosts={hosts}")
    return " ".join(params)


def start_script_text(
    image: MicroImage, node: MicroNode, qemu: str = "qemu-system-x86_64", uefi: bool = False
) -> str:
    """A `run-<name>-vm` script: appends "$@", honours NIX_DISK_IMAGE, TMPDIR + USE_TMPDIR,
    QEMU_OPTS, QEMU_NET_OPTS, QEMU_KERNEL_PARAMS and QEMU_VDE_SOCKET_<n> like qemu-vm.nix's.
    With `uefi`, OVMF starts the kernel (still given with -kernel, through fw_cfg) and the
    script honours NIX_EFI_VARS as qemu-vm.nix does, but keeps the variable store in qcow2:
    QEMU refuses `savevm` with a writable raw drive, and qemu-vm.nix attaches it raw."""
    q = shlex.quote
    vlan_args = "".join(
        f" \\\n    -device virtio-net-pci,netdev=vlan{v},mac={mac_address(v, node.number)}"
        f" -netdev vde,id=vlan{v},sock=\"$QEMU_VDE_SOCKET_{v}\""
        for v in node.vlans
    )
    vlan_checks = "".join(
        f'if [ -z "${{QEMU_VDE_SOCKET_{v}:-}}" ]; then\n'
        f'  echo "run-{node.name}-vm: QEMU_VDE_SOCKET_{v} is not set (VLAN {v})" >&2; exit 1\nfi\n'
        for v in node.vlans
    )
    bios = f" \\\n    -bios {q(str(image.bios))}" if image.bios else ""
    efi_vars = ""
    if uefi:
        bios = (
            f" \\\n    -drive if=pflash,format=raw,unit=0,readonly=on,file={q(str(OVMF_CODE))}"
            " \\\n    -drive if=pflash,format=qcow2,unit=1,readonly=off,file=\"$NIX_EFI_VARS\""
        )
        efi_vars = f"""
NIX_EFI_VARS=$(readlink -f "${{NIX_EFI_VARS:-./{node.name}-efi-vars.fd}}")
if ! test -e "$NIX_EFI_VARS"; then
  qemu-img convert -q -f raw -O qcow2 {q(str(OVMF_VARS))} "$NIX_EFI_VARS"
fi
"""
    return f"""#!/usr/bin/env bash
# run-{node.name}-vm: the micro image as node {node.number} ({node.name}), generated by
# nixos-deploy-harness with the interface of NixOS's qemu-vm.nix start scripts.
set -e

NIX_DISK_IMAGE=$(readlink -f "${{NIX_DISK_IMAGE:-./{node.name}.qcow2}}")
if ! test -e "$NIX_DISK_IMAGE"; then
  qemu-img create -q -f qcow2 -F qcow2 -b {q(str(image.base_disk))} "$NIX_DISK_IMAGE"
fi
{efi_vars}
if [ -z "${{TMPDIR:-}}" ] || [ -z "${{USE_TMPDIR:-}}" ]; then
  TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi
{vlan_checks}cd "$TMPDIR"

exec {q(qemu)} \\
    -name {q(node.name)} \\
    -m {node.memory_mb} \\
    -smp 1 \\
    -nodefaults \\
    -drive file="$NIX_DISK_IMAGE",if=none,id=disk0,format=qcow2,cache=writeback,werror=report \\
    -device virtio-blk-pci,drive=disk0{bios} \\
    -kernel {q(str(image.kernel))} \\
    -initrd {q(str(image.initrd))} \\
    -append {q(kernel_params(node))}" $QEMU_KERNEL_PARAMS" \\
    -device virtio-net-pci,netdev=user.0 \\
    -netdev user,id=user.0${{QEMU_NET_OPTS:+,$QEMU_NET_OPTS}}{vlan_args} \\
    $QEMU_OPTS \\
    "$@"
"""


def write_start_script(directory: Path, image: MicroImage, node: MicroNode, uefi: bool = False) -> Path:
    """Write `<directory>/bin/run-<name>-vm` and return its path."""
    path = directory / "bin" / f"run-{node.name}-vm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(start_script_text(image, node, uefi=uefi))
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class Micro:
    """The micro image as a fleet's Image: one generated start script per node. `uefi`: boot
    through OVMF (Debian's `ovmf` package) with a qcow2 EFI variable store per node, the way
    the fleet's NixOS targets boot; otherwise direct kernel boot with qboot (faster)."""

    uefi: bool = False

    def start_scripts(self, spec, state_dir: Path, progress: Callable[[str], None]) -> dict[str, Path]:
        if self.uefi:
            missing = [str(path) for path in (OVMF_CODE, OVMF_VARS) if not path.exists()]
            if missing:
                raise MicroImageError(
                    f"UEFI micro nodes need the OVMF firmware ({', '.join(missing)} missing): "
                    "install Debian's `ovmf` package (ci/bootstrap does)"
                )
        image = ensure_micro_image(progress)
        numbers, hosts = spec.node_numbers(), spec.addresses()
        return {
            name: write_start_script(
                state_dir / name,
                image,
                MicroNode(name, numbers[name], node.vlans, hosts, node.memory_mb),
                uefi=self.uefi,
            )
            for name, node in spec.nodes.items()
        }

    def accel_options(self, accel: str) -> tuple[str, ...]:
        return ("-accel", accel)  # our own script: nothing else picks an accelerator

    @property
    def snapshot_drive(self) -> str:
        return "disk0"  # the script's first drive (also under UEFI: the pflash drives follow it)


MICRO = Micro()
MICRO_UEFI = Micro(uefi=True)

