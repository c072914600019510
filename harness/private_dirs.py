"""The one trust rule for the directories the harness keeps state in: the state root of test
runs ($NDH_STATE_DIR or its default), the fleets root of kept fleets ($NDH_FLEETS_DIR or its
default) and each kept fleet's directory. Such a directory must be this user's own, not a
symbolic link, and closed to everybody else (no group or other permission bits). One made by
someone else (say /tmp/ndh-<uid>, made before us), or open to others (0777, 1777), could hold
forged state, pids and symlinks that lead the harness to read, write, remove or signal what is
not its own. The rule is the same whoever names the directory: an environment variable, a
default, or a state file. Imports nothing of the harness."""
from __future__ import annotations

import os
import stat
from pathlib import Path


class UntrustedDirectory(RuntimeError):
    """A directory the harness refuses to keep state in; the message says why and what to do."""

    def __init__(self, path: Path, what: str, problem: str, fix: str) -> None:
        super().__init__(f"refusing to use the {what} {path}: {problem}. To go on: {fix}")
        self.path = path
        self.problem = problem


def problem_of(path: Path) -> str | None:
    """Why `path` is not a private directory of this user, or None if it is. Raises
    FileNotFoundError if there is nothing at `path`."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.getuid():
        return f"it belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & 0o077:
        return f"its mode is {stat.filemode(info.st_mode)}, so others can enter it"
    return None


def require_private(path: Path, what: str, otherwise: str) -> Path:
    """`path`, if it is a private directory of this user; else UntrustedDirectory. The fix it
    names is `chmod 700` where that is enough, else `otherwise` (what to do instead)."""
    problem = problem_of(path)
    if problem is None:
        return path
    fix = f"`chmod 700 {path}`" if problem.startswith("its mode") else otherwise
    raise UntrustedDirectory(path, what, problem, fix)


def make_private(path: Path, what: str, otherwise: str) -> Path:
    """`path`, created 0700 (with its parents) if missing, then checked as require_private does:
    an existing directory is never made private behind the user's back."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # not a directory: require_private says so
        pass
    return require_private(path, what, otherwise)
