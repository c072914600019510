"""What deploy-harness says when a node's backdoor does not give an answer: a command that ended
the shell, one that outlived its timeout or was interrupted, a node that cannot be attached.
Each message says what happened, as far as the host can know it, and the exact command that
gets the node going again (a restore: the backdoor cannot signal a command, and an ended
shell only comes back with a restored snapshot or a rebooted guest)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from .. import keep
from ..fleet import PRISTINE
from ..keep.attach import ATTACH_TIMEOUT
from ..vm.backdoor import BackdoorShellExited
from ..vm.monitor import saved_memory
from . import shell_history


def restore_command(fleet: str, node: str, snapshot: str = PRISTINE) -> str:
    return f"{keep.env_prefix()}deploy-harness restore {node} {snapshot} --fleet {fleet}"


def shell_ended(fleet: str, node: str, command: str, exited: BackdoorShellExited) -> str:
    how = str(exited).removeprefix("the backdoor shell ")  # "exited with status 137 (SIGKILL)"
    what = (f"the backdoor shell of {node} had ended before `{command}` ({how})" if exited.earlier
            else f"`{command}` ended the backdoor shell of {node}: {how}")
    return (
        f"{what}. Nothing reads commands on {node} until a snapshot is restored (or the guest "
        f"reboots): {restore_command(fleet, node)}{_snapshots(fleet, node)}"
    )


def timed_out(fleet: str, node: str, command: str, timeout: float) -> str:
    return (
        f"`{command}` did not finish on {node} within {timeout:g} s (set another limit with "
        f"--timeout SECONDS). Its backdoor shell is alive (one that ends says so at once), so the "
        f"command is most likely still running, and the backdoor cannot stop it: the next "
        f"`run` or `shell` on {node} waits {ATTACH_TIMEOUT} s for it to end. To go on at once, "
        f"restore a snapshot: {restore_command(fleet, node)}{_snapshots(fleet, node)}"
    )


def interrupted(fleet: str, node: str, command: str) -> str:
    return (
        f"interrupted: `{command}` had not finished on {node}, and its backdoor shell had not "
        f"ended, so the command is most likely still running there (the backdoor cannot signal "
        f"it). The next `run` or `shell` on {node} waits {ATTACH_TIMEOUT} s for it to end; to "
        f"go on at once, restore a snapshot: {restore_command(fleet, node)}"
    )


def cannot_attach(fleet: str, node: str, state_dir: Path, error: Exception) -> str:
    """The backdoor of `node` did not answer a reattach: say why, from its transcript."""
    state = shell_history.read(state_dir / "transcript.log")
    restore = f"{restore_command(fleet, node)}{_snapshots(fleet, node)}"
    if state.ended is not None:
        status = f" with status {state.ended.status}" if state.ended.status is not None else ""
        return (
            f"cannot attach to {node}: its backdoor shell ended{status} at {state.ended.time}, "
            f"while `{state.ended.command}` ran, and no snapshot was restored since: nothing reads "
            f"commands there. Restore a snapshot to go on: {restore}"
        )
    if state.busy is not None:
        return (
            f"cannot attach to {node}: it did not answer within {ATTACH_TIMEOUT} s; "
            f"`{state.busy.command}` (started {state.busy.time}) has not finished there, and the "
            f"backdoor cannot stop it. Wait for it, or restore a snapshot: {restore}"
        )
    return (
        f"{error}\nIf no other process is attached to {node}, restore a snapshot to go on: {restore}"
    )


def _snapshots(fleet: str, node: str) -> str:
    """`` (snapshots of NODE: a, b)``, read from its disk; nothing where that cannot be read."""
    try:
        record = keep.find(fleet)
        names = sorted(saved_memory(Path(record.node(node).state_dir) / f"{node}.qcow2"))
    except (keep.FleetStateError, OSError, ValueError, KeyError, subprocess.CalledProcessError):
        return ""
    return f" (snapshots of {node}: {', '.join(names)})" if names else ""
