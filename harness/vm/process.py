"""Child processes (QEMU, vde_switch) that cannot outlive the run: each is put in its own
session, tied to its parent with PR_SET_PDEATHSIG (so even a SIGKILLed pytest worker takes its
VMs with it), registered, and ended by pid in teardown, at exit, or on interrupt.

Every child starts with the default disposition of the signals the harness ends or stops
processes with: a run started under `nohup` or with `&` ignores SIGHUP or SIGINT and SIGQUIT,
and a child would inherit that (exec keeps ignored signals ignored)."""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
from typing import Any

_PR_SET_PDEATHSIG = 1
_live: dict[int, subprocess.Popen] = {}


# Bound once here: between fork and exec the child may only call async-signal-safe code, and
# loading a library there (dlopen) can deadlock when the parent has threads (console readers).
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_signal = _libc.signal  # the C function: Python's signal.signal may only run in the main thread
_signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
_signal.restype = ctypes.c_void_p
# Ignored in a run under `nohup` (HUP) or started with `&` by a shell without job control (INT,
# QUIT); Python resets SIGPIPE and SIGXFSZ itself (restore_signals).
DEFAULT_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
_SIG_DFL = 0


def _default_signals() -> None:
    for number in DEFAULT_SIGNALS:
        _signal(number, _SIG_DFL)


def _die_with_parent() -> None:
    _default_signals()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv: list[str], *, leash: bool = True, **popen_kwargs: Any) -> subprocess.Popen:
    """Start `argv` in a new session, with default signal dispositions. With `leash` (the
    default) it dies with this process; without, it is left running for the user (--keep-vms)
    and not registered."""
    proc = subprocess.Popen(
        argv,
        start_new_session=True,
        preexec_fn=_die_with_parent if leash else _default_signals,
        **popen_kwargs,
    )
    if leash:
        _live[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen, grace: float = 3.0) -> int:
    """SIGTERM the process's group, SIGKILL it after `grace` seconds; reap; return the status."""
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(10)
        else:
            # The leader is gone; anything it left in its group goes too.
            _signal_group(proc, signal.SIGKILL)
    finally:
        _live.pop(proc.pid, None)
    return proc.returncode


def kill(proc: subprocess.Popen) -> None:
    """End at once (SIGKILL to the group) and reap."""
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(10)
    finally:
        _live.pop(proc.pid, None)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass


def kill_all() -> None:
    """End every registered process: the last line of defence at exit and on interrupt."""
    for proc in list(_live.values()):
        kill(proc)


def wait_for_exit(proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


atexit.register(kill_all)
