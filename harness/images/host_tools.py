"""Host tools the image recipes run, found where Debian installs them: on PATH, and in the sbin
directories, which are not on a Debian user's PATH (`mke2fs` is /usr/sbin/mke2fs, and
`/sbin/mke2fs` on systems without merged /usr)."""
from __future__ import annotations

import os
import shutil

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find(tool: str) -> str | None:
    """The path of `tool` (a command name, or an absolute path that must be executable), or
    None where it is neither on PATH nor in an sbin directory."""
    if os.path.isabs(tool):
        return tool if os.access(tool, os.X_OK) and os.path.isfile(tool) else None
    found = shutil.which(tool)
    if found is not None:
        return found
    return shutil.which(tool, path=os.pathsep.join(SBIN_DIRS))


def missing(tools: tuple[str, ...] | list[str]) -> list[str]:
    """The tools of `tools` that `find` cannot find, in order."""
    return [tool for tool in tools if find(tool) is None]


def require(tool: str, why: str) -> str:
    """The path of `tool`, or FileNotFoundError saying where it was looked for and `why`."""
    found = find(tool)
    if found is None:
        raise FileNotFoundError(f"{why} needs `{tool}`, which is neither on PATH nor in {', '.join(SBIN_DIRS)}")
    return found
