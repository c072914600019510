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


def check_private(path: Path, what: str) -> Path:
    """`path`, if it is a directory of this user that nobody else can enter: one made by someone
    else (say /tmp/ndh-<uid>, made before us) could hold forged fleets, pids and symlinks."""
    info = path.lstat()
    mode = stat.filemode(info.st_mode)
    problem = (
        "it is a symbolic link" if stat.S_ISLNK(info.st_mode)
        else "it is not a directory" if not stat.S_ISDIR(info.st_mode)
        else f"it belongs to uid {info.st_uid}, not to you (uid {os.getuid()})" if info.st_uid != os.getuid()
        else f"its mode is {mode}, so others can enter it" if info.st_mode & 0o077
        else None
    )
    if problem:
        fix = (
            f"`chmod 700 {path}`" if problem.startswith("its mode")
            else "set NDH_FLEETS_DIR to a private directory of yours" if what == "fleets directory"
            else "remove it: deploy-harness did not make it"
        )
        raise FleetStateError(f"refusing to use the {what} {path}: {problem}. To go on: {fix}")
    return path


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
