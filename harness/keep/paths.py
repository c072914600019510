"""Where kept fleets live and what they may be called.

The root is `$NDH_FLEETS_DIR`, else `$XDG_RUNTIME_DIR/nixos-deploy-harness`, else
`/tmp/ndh-<uid>`: per user, private, and short (unix socket paths must stay under 108 bytes).
"""
from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

from .errors import FleetStateError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def fleets_root() -> Path:
    explicit = os.environ.get("NDH_FLEETS_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "nixos-deploy-harness"
    return Path(f"/tmp/ndh-{os.getuid()}")


def private_root() -> Path:
    """The fleets root, created 0700 if missing; refused if someone else could write to it."""
    root = fleets_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise FleetStateError(
            f"{root} is not a private directory of yours (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}): remove it, or set NDH_FLEETS_DIR to another place"
        )
    return root


def env_prefix() -> str:
    """What a printed command needs in front when fleets live in a non-default root."""
    explicit = os.environ.get("NDH_FLEETS_DIR")
    return f"NDH_FLEETS_DIR={shlex.quote(explicit)} " if explicit else ""


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise FleetStateError(
            f"fleet name {name!r} is not usable: letters, digits, '_', '.', '-', at most 40 "
            "characters, starting with a letter or digit"
        )
    return name


def dir_name_for(spec_name: str) -> str:
    """A spec name made usable as a fleet name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_name).strip("-._")[:32]
    return cleaned or "fleet"
