"""How QEMU reads the drive that holds a machine's snapshots. `loadvm` reads the saved guest
memory from that drive in 32 KiB pieces; with QEMU's default (`aio=threads`) each piece is
handed to a worker thread and back, and a restore spends more time switching threads than
copying memory. With `aio=io_uring` a micro node's loadvm takes half as long
(docs/snapshots.md).

io_uring is not everywhere: an old kernel, a container whose seccomp profile forbids it (Docker's
default profile does), a QEMU built without liburing. So each process asks QEMU once, by opening
a scratch drive with `aio=io_uring`, and uses it only where that worked. The option reaches the
image's own `-drive` through `-set drive.<id>.aio=...` in QEMU_OPTS, which start scripts put
after their drives. NDH_DISK_AIO=threads (or io_uring) decides without asking."""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV = "NDH_DISK_AIO"
CHOICES = ("io_uring", "threads")
PROBE_TIMEOUT = 30
_QMP_QUIT = '{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n'


@dataclass(frozen=True)
class AioChoice:
    name: str  # "io_uring" or "threads"
    reason: str


@functools.cache
def choice(qemu: str = "qemu-system-x86_64") -> AioChoice:
    """This process's choice, asked of QEMU at most once."""
    forced = os.environ.get(ENV)
    if forced:
        if forced not in CHOICES:
            raise ValueError(f"{ENV} must be one of {', '.join(CHOICES)}, not {forced!r}")
        return AioChoice(forced, f"forced by {ENV}={forced}")
    failure = io_uring_failure(qemu)
    if failure is None:
        return AioChoice("io_uring", f"{qemu} opened a drive with aio=io_uring")
    return AioChoice("threads", f"io_uring unusable here ({failure}); QEMU's default")


def io_uring_failure(qemu: str) -> str | None:
    """Why `qemu` cannot open a drive with aio=io_uring here, or None when it can."""
    with tempfile.TemporaryDirectory(prefix="ndh-aio-probe-") as scratch:
        disk = Path(scratch, "probe.img")
        disk.write_bytes(bytes(4096))
        argv = [
            qemu, "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio",
            "-drive", f"file={disk},format=raw,if=none,id=probe,aio=io_uring",
        ]
        try:
            proc = subprocess.run(argv, input=_QMP_QUIT, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        except FileNotFoundError:
            return f"{qemu} is not on PATH"
        except subprocess.TimeoutExpired:
            return f"{qemu} did not quit within {PROBE_TIMEOUT} s"
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    # "qemu-system-x86_64: -drive file=...,aio=io_uring: Unable to use io_uring: ...": QEMU's words.
    return lines[-1].split("aio=io_uring: ", 1)[-1] if lines else f"{qemu} exited with status {proc.returncode}"


def drive_options(drive_id: str | None) -> tuple[str, ...]:
    """The QEMU options that give drive `drive_id` this process's AIO choice (none for QEMU's
    default, or when the image names no drive)."""
    if drive_id is None:
        return ()
    aio = choice()
    if aio.name == "threads":
        return ()
    return ("-set", f"drive.{drive_id}.aio={aio.name}")


def hint(qemu_output: str) -> str:
    """A sentence for a start failure that our `-set drive.<id>.aio` caused, else ""."""
    if "-set drive." in qemu_output and "there is no drive" in qemu_output:
        return (". The image names a snapshot drive this start script does not define; "
                f"{ENV}=threads starts it without the option")
    if "Unable to use io_uring" in qemu_output:
        return (". This QEMU cannot use io_uring (the probe asked the QEMU on PATH, which may be "
                f"another build); {ENV}=threads starts it without")
    return ""
