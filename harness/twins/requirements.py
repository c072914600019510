"""What a rehearsal on NixOS twins needs from this machine, each missing piece in one line:
Nix new enough for current nixpkgs, a working KVM (or TCG asked for), and the NixOS twin fleet
itself. A rehearsal that lacks any of them refuses to start; it never reports a result it did
not observe."""
from __future__ import annotations

import os
from typing import Optional

from harness import accel, nix


KVM_DEVICE = "/dev/kvm"


def nix_problem() -> Optional[str]:
    """Why this machine's nix cannot build NixOS twins; None when it can."""
    try:
        found = nix.find_nix()
        return nix.too_old(found)
    except nix.NixUnavailable as error:
        return str(error)


def kvm_problem(requested: str, device: str = KVM_DEVICE) -> Optional[str]:
    """Why the twins cannot run under KVM (`--accel auto|kvm`); None under `--accel tcg`."""
    if requested == "tcg":
        return None
    if not os.path.exists(device):
        return f"no {device}: NixOS twins need KVM (a runner with nested virtualisation), or --accel tcg (very slow)"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is not readable and writable by this user (add it to the kvm group), or pass --accel tcg"
    if requested == "auto":
        choice = accel.resolve("auto")  # boots a bare guest under KVM once per host, cached
        if choice.name != "kvm":
            return f"KVM does not run guests here ({choice.reason}); pass --accel tcg to boot them anyway (very slow)"
    return None


def missing(accel_name: str, device: str = KVM_DEVICE) -> list[str]:
    """Every missing requirement, in the order a person would fix them."""
    return [p for p in (nix_problem(), kvm_problem(accel_name, device)) if p]
