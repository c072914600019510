"""Where kept fleets live and what they may be called.

The root is `$NDH_FLEETS_DIR`, else `$XDG_RUNTIME_DIR/nixos-deploy-harness`, else
`/tmp/ndh-<uid>`: per user, private, and short (unix socket paths must stay under 108 bytes).
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from ..private_dirs import UntrustedDirectory, require_private
from ..specs import check_fleet_name
from .errors import FleetStateError


def fleets_root() -> Path:
    explicit = os.environ.get("NDH_FLEETS_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "nixos-deploy-harness"
    return Path(f"/tmp/ndh-{os.getuid()}")


def check_private(path: Path, what: str) -> Path:
    """`path`, if it passes the harness's one trust rule (harness/private_dirs.py: a directory of
    this user that nobody else can enter), as this layer's error otherwise. Raises
    FileNotFoundError if there is nothing at `path`."""
    otherwise = (
        "set NDH_FLEETS_DIR to a private directory of yours" if what == "fleets directory"
        else "remove it: deploy-harness did not make it"
    )
    try:
        return require_private(path, what, otherwise)
    except UntrustedDirectory as exc:
        raise FleetStateError(str(exc)) from None


def existing_root() -> Path | None:
    """The fleets root, checked, or None if there is none yet."""
    try:
        return check_private(fleets_root(), "fleets directory")
    except FileNotFoundError:
        return None


def private_root() -> Path:
    """The fleets root, created 0700 if missing, checked."""
    fleets_root().mkdir(mode=0o700, parents=True, exist_ok=True)
    return check_private(fleets_root(), "fleets directory")


def env_prefix() -> str:
    """What a printed command needs in front when fleets live in a non-default root."""
    explicit = os.environ.get("NDH_FLEETS_DIR")
    return f"NDH_FLEETS_DIR={shlex.quote(explicit)} " if explicit else ""


def check_name(name: str) -> str:
    """The rule of FleetSpec names (harness/specs.py), as this layer's error."""
    try:
        return check_fleet_name(name)
    except ValueError as exc:
        raise FleetStateError(str(exc)) from None


def dir_name_for(spec_name: str) -> str:
    """A spec name made usable as a fleet name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_name).strip("-._")[:32]
    return cleaned or "fleet"
