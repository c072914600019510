"""Debian packages as build inputs: resolve, download without installing, unpack, version."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from . import host_tools


class DebianPackageError(RuntimeError):
    """A Debian package needed to build an image could not be resolved or fetched."""


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    tool = host_tools.find(argv[0])
    if tool is None:
        raise DebianPackageError(f"{what}: `{argv[0]}` is not installed (this needs a Debian host)")
    proc = subprocess.run([tool, *argv[1:]], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DebianPackageError(f"{what}: `{' '.join(argv)}` failed: {' | '.join(detail)}")
    return proc.stdout


def resolve_dependency(metapackage: str, prefix: str) -> str:
    """The first dependency of `metapackage` whose name starts with `prefix`
    (linux-image-cloud-amd64 -> linux-image-6.1.0-NN-cloud-amd64)."""
    out = _run(["apt-cache", "depends", metapackage], f"resolving {metapackage}")
    for line in out.splitlines():
        match = re.match(r"\s*Depends:\s*(\S+)", line)
        if match and match.group(1).startswith(prefix):
            return match.group(1)
    raise DebianPackageError(
        f"{metapackage} has no dependency named {prefix}*: run `apt-get update` as root first"
    )


def candidate_version(package: str) -> str:
    """The version apt would download for `package`."""
    out = _run(["apt-cache", "policy", package], f"looking up {package}")
    match = re.search(r"Candidate:\s*(\S+)", out)
    if not match or match.group(1) == "(none)":
        raise DebianPackageError(f"no candidate version of {package}: run `apt-get update` as root")
    return match.group(1)


def installed_version(package: str) -> str:
    """The installed version of `package`, or a clear error naming the package to install."""
    proc = subprocess.run(
        [host_tools.find("dpkg-query") or "dpkg-query", "-W", "-f", "${Status}|${Version}", package],
        capture_output=True, text=True,
    )
    status, _, version = proc.stdout.partition("|")
    if proc.returncode != 0 or "installed" not in status.split():
        raise DebianPackageError(f"{package} is not installed: `apt-get install {package}`")
    return version


def download_and_unpack(package: str, workdir: Path) -> Path:
    """`apt-get download` the package into `workdir` and unpack it (no install): its root."""
    workdir.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", "-q", package], f"downloading {package}", cwd=workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise DebianPackageError(f"apt-get download {package} left no .deb in {workdir}")
    root = workdir / "root"
    _run(["dpkg-deb", "-x", str(debs[-1]), str(root)], f"unpacking {package}")
    return root
