"""The serial console log (QEMU's stdout, written by QEMU itself to a file), the verbs that
read it (mixed into Machine), and the per-command transcript of the backdoor."""
from __future__ import annotations

import re
import time
from pathlib import Path

from .errors import WaitTimeout
from .guest import DEFAULT_TIMEOUT
from .poll import PollTimeout, poll


def tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024, start: int = 0) -> str:
    """The last `lines` lines of a log file (of what it holds from byte `start` on), readable
    even if the guest wrote binary junk."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(start, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


_NOTABLE = re.compile(r"Kernel panic|BUG:|Oops:|general protection fault|Attempted to kill init")


def excerpt(path: Path, lines: int = 30, start: int = 0) -> str:
    """The tail of a serial log for an error message. A kernel panic's first line is usually
    followed by a long stack dump, so when it has scrolled out of the tail it is put first."""
    text = tail(path, lines=2000, start=start)
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


class SerialConsoleVerbs:
    def serial_tail(self, lines: int = 30) -> str:
        return tail(self.serial_log, lines)

    def get_console_log(self) -> str:
        """Everything the serial console printed since this machine's state directory was made."""
        return self.serial_log.read_bytes().decode("utf-8", "replace").replace("\r", "") if self.serial_log.exists() else ""

    def wait_for_console_text(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait for text matching `regex` on the serial console; returns the match. Only what
        the console printed since this machine's last start, restore or match counts."""
        pattern = re.compile(regex.encode())

        def search():
            with open(self.serial_log, "rb") as log:
                log.seek(self._serial_offset)
                return pattern.search(log.read())

        try:
            match = poll(search, lambda found: found is not None, timeout)
        except PollTimeout:
            raise WaitTimeout(
                self.name, f"no console text matching {regex!r} within {timeout} s", 1, "",
                serial_tail=self.evidence_tail(),
            ) from None
        self._serial_offset += match.end()
        return match.group(0).decode("utf-8", "replace")

    def _serial_size(self) -> int:
        return self.serial_log.stat().st_size if self.serial_log.exists() else 0

    def note(self, text: str) -> None:
        """Write a marker into the transcript (the plugin marks each test's start)."""
        self._transcript.note(text)
