"""The serial console log (QEMU's stdout, written by QEMU itself to a file) and the
per-command transcript of the backdoor."""
from __future__ import annotations

import re
import time
from pathlib import Path


def tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a log file, readable even if the guest wrote binary junk."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


_NOTABLE = re.compile(r"Kernel panic|BUG:|Oops:|general protection fault|Attempted to kill init")


def excerpt(path: Path, lines: int = 30) -> str:
    """The tail of a serial log for an error message. A kernel panic's first line is usually
    followed by a long stack dump, so when it has scrolled out of the tail it is put first."""
    text = tail(path, lines=2000)
    all_lines = text.splitlines()
    last = all_lines[-lines:]
    notable = [line for line in all_lines[:-lines] if _NOTABLE.search(line)]
    if notable:
        return "\n".join(notable[:3] + ["[...]"] + last)
    return "\n".join(last)


class Transcript:
    """What was run on a machine, how it ended and what it printed (capped), in order."""

    PREVIEW = 4096

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8", errors="replace")

    def note(self, text: str) -> None:
        self._file.write(f"[{time.strftime('%H:%M:%S')}] # {text}\n")
        self._file.flush()

    def command(self, command: str, status: int | str, output: bytes, seconds: float) -> None:
        preview = output[: self.PREVIEW].decode("utf-8", "replace")
        more = f" (+{len(output) - self.PREVIEW} bytes)" if len(output) > self.PREVIEW else ""
        self._file.write(
            f"[{time.strftime('%H:%M:%S')}] $ {command}\n"
            f"  -> {status} in {seconds * 1000:.1f} ms, {len(output)} bytes{more}\n"
        )
        if preview:
            self._file.write("  | " + preview.rstrip("\n").replace("\n", "\n  | ") + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
