"""The one place that builds what a `run-<name>-vm` start script is given: the QEMU options for
the backdoor console, QMP, serial log and reboot policy, the accelerator in the form the image
asks for, user networking, VLAN sockets and state paths (the variables nixpkgs' qemu-vm.nix
start scripts honour: QEMU_OPTS, QEMU_NET_OPTS, QEMU_VDE_SOCKET_<n>, NIX_DISK_IMAGE, TMPDIR,
USE_TMPDIR, SHARED_DIR)."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


def accel_flag(accel: str) -> tuple[str, ...]:
    """The engine's default accelerator option; an image whose start script picks its own
    accelerator another way asks for another form (harness.images.nixos)."""
    return ("-accel", accel)


@dataclass(frozen=True)
class PortForward:
    """Host 127.0.0.1:<host_port> -> guest <guest_port> over QEMU user networking."""

    guest_port: int
    host_port: int


_HOST_FORWARD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+(\d+)")


def bound_forwards(forwards: Sequence[PortForward], usernet: str) -> list[PortForward]:
    """The forwards with the host ports QEMU bound, from HMP `info usernet` (asked to bind port
    0, QEMU lets the kernel pick a free one)."""
    bound = {int(guest): int(host) for host, guest in _HOST_FORWARD.findall(usernet)}
    missing = [f.guest_port for f in forwards if f.guest_port not in bound]
    if missing:
        raise ValueError(f"QEMU reports no host forward for guest ports {missing}: {usernet.strip()!r}")
    return [PortForward(f.guest_port, bound[f.guest_port]) for f in forwards]


@dataclass(frozen=True)
class QemuLaunch:
    state_dir: Path
    disk_image: Path
    shared_dir: Path
    accel_options: Sequence[str]
    drive_options: Sequence[str] = ()
    allow_reboot: bool = False
    reattachable: bool = False
    forwards: Sequence[PortForward] = ()
    vlans: Mapping[int, Path] = field(default_factory=dict)

    def environment(self, console_fd: int, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        # A reattachable console's fd is a listening socket: QEMU serves it.
        serve = ",server=on,wait=off" if self.reattachable else ""
        options = [
            f"-qmp unix:{self.state_dir / 'qmp'},server=on,wait=off",
            f"-chardev socket,id=shell,fd={console_fd}{serve}",
            "-device virtio-serial",
            "-device virtconsole,chardev=shell",
            "-device virtio-rng-pci",
            "-serial stdio",
            "-display none",
            " ".join(self.accel_options),
            " ".join(self.drive_options),
        ]
        if not self.allow_reboot:
            options.append("-no-reboot")
        net = ["restrict=on"] + [f"hostfwd=tcp:127.0.0.1:{f.host_port}-:{f.guest_port}" for f in self.forwards]
        env = dict(base)
        env.update(
            {
                "TMPDIR": str(self.state_dir),
                "USE_TMPDIR": "1",
                "SHARED_DIR": str(self.shared_dir),
                "NIX_DISK_IMAGE": str(self.disk_image),
                # The user's own QEMU_OPTS come last: they may override ours.
                "QEMU_OPTS": " ".join(options + [base.get("QEMU_OPTS", "")]).strip(),
                "QEMU_NET_OPTS": ",".join(net),
            }
        )
        for number, socket_dir in self.vlans.items():
            env[f"QEMU_VDE_SOCKET_{number}"] = str(socket_dir)
        return env


def enlarge_send_buffer(sock: socket.socket, size: int = 16 << 20) -> None:
    """Best effort: SO_SNDBUFFORCE needs CAP_NET_ADMIN; SO_SNDBUF is capped by wmem_max."""
    for option in (32, socket.SO_SNDBUF):  # 32 = SO_SNDBUFFORCE (Linux)
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue
