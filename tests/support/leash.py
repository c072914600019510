"""Child pytest runs of the self-tests (pytester's `runpytest_subprocess`, `popen`) on a leash, as
the harness keeps its VMs (harness/vm/process.py): a child gets SIGTERM when the process that
started it dies, even by SIGKILL (PR_SET_PDEATHSIG), and one still running when its test ends,
say because the run was interrupted (SIGTERM, Ctrl-C) while it waited, is ended by pid. A child
pytest tears down on SIGTERM as on Ctrl-C (the harness's plugin): its VMs and state go with it."""
from __future__ import annotations

import ctypes
import signal
import subprocess
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1
# Bound once here: between fork and exec the child may only call async-signal-safe code.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
# How long a child may take to tear down (its VMs, its state) after SIGTERM before SIGKILL.
GRACE = 60.0


def _terminate_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Leash:
    """Wraps a `popen(cmdargs, **kw) -> subprocess.Popen` (pytester's) so that its children are
    leashed; `end_all` ends those still running."""

    def __init__(self, popen: Callable[..., subprocess.Popen]) -> None:
        self._popen = popen
        self.children: list[subprocess.Popen] = []

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        if kwargs.get("preexec_fn") is not None:
            raise ValueError("a leashed child has the leash's preexec_fn")
        kwargs["preexec_fn"] = _terminate_with_parent
        child = self._popen(*args, **kwargs)
        self.children.append(child)
        return child

    def end_all(self) -> list[int]:
        """SIGTERM every child still running, SIGKILL it after GRACE seconds; reap. Returns the
        pids that had to be ended."""
        ended = []
        for child in self.children:
            if child.poll() is not None:
                continue
            ended.append(child.pid)
            child.terminate()
            try:
                child.wait(GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return ended
