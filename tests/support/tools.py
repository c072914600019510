"""Skips that name what is missing and where it comes from, and a PATH without some tools (a
host as a user without them has it)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


# The Debian package of each tool the self-tests call (ci/bootstrap installs them; with Nix,
# `nix develop` provides most).
PACKAGES = {
    "nix": "nix-bin", "nix-store": "nix-bin", "nix-env": "nix-bin", "nix-instantiate": "nix-bin",
    "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "vde_switch": "vde2",
    "modprobe": "kmod", "depmod": "kmod", "cpio": "cpio", "mke2fs": "e2fsprogs", "xz": "xz-utils",
    "promtool": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter",
    "age": "age", "age-keygen": "age", "ssh-keygen": "openssh-client", "shellcheck": "shellcheck",
    "visudo": "sudo", "git": "git", "unshare": "util-linux", "openssl": "openssl",
}


def require(*tools: str, package: str | None = None) -> None:
    """Skip unless every tool is on PATH; the reason names the tool and the Debian package that
    provides it (ci/bootstrap installs it)."""
    for tool in tools:
        if shutil.which(tool) is None:
            source = package or PACKAGES.get(tool)
            where = f": install Debian's {source} (ci/bootstrap does), or use `nix develop`" if source else ""
            pytest.skip(f"{tool} is not installed on this host{where}")


def path_without(directory: Path, *prefixes: str) -> str:
    """A PATH of one new `directory` holding links to every program of this PATH except those
    whose names start with `prefixes` (the first of each name, as the shell would find it)."""
    directory.mkdir()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = Path(entry, name)
            if name.startswith(prefixes) or (directory / name).exists():
                continue
            if target.is_file() and os.access(target, os.X_OK):
                (directory / name).symlink_to(target)
    return str(directory)
