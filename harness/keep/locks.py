"""One driver per node: QEMU serves a node's console and QMP to one client at a time, so whoever
drives a node holds its lock (`<node dir>/attach.lock`, flock) and writes who it is there; a
second one gets a clear "in use by ..." error instead of a connection QEMU never answers."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import FleetStateError, NodeBusy


class NodeLock:
    def __init__(self, node_dir: Path, node: str) -> None:
        self.path = Path(node_dir) / "attach.lock"
        self.node = node
        self._fd: int | None = None

    def acquire(self, holder: str) -> None:
        if self._fd is not None:
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise NodeBusy(
                f"node {self.node} is in use by {who}: QEMU serves its console to one client at a "
                "time. Detach that session first (Ctrl-] in `deploy-harness shell`; a paused "
                "pytest lets go of its nodes while it waits for Enter)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, never through a symlink, and only a plain file of ours (we truncate it)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            info = os.fstat(fd)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise FleetStateError(f"refusing the lock of node {self.node}, {self.path}: {why}. Remove it.") from None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1:
            os.close(fd)
            raise FleetStateError(
                f"refusing the lock of node {self.node}, {self.path}: not a plain file of yours "
                f"(uid {info.st_uid}, {info.st_nlink} links). Remove it."
            )
        return fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
