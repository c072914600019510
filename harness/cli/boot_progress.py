"""The ticker `deploy-harness up` shows while a fleet boots: elapsed time and each node's last
serial console line, redrawn in place on a terminal, a line every 5 s otherwise."""
from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from ..vm import console


class BootProgress:
    def __init__(self, directory: Path, nodes: list[str], stream=None) -> None:
        self.directory = directory
        self.nodes = nodes
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer at a time: the ticker or say()
        self._thread = threading.Thread(target=self._loop, name="boot-progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> "BootProgress":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._clear()

    def say(self, text: str) -> None:
        """A message of the boot itself (Fleet's progress callback), on its own line."""
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _loop(self) -> None:
        interval = 0.5 if self.tty else 5.0
        while not self._stop.wait(interval):
            elapsed = time.monotonic() - self._started
            lasts = []
            for node in self.nodes:
                last = console.tail(self.directory / node / "serial.log", 1).strip()
                lasts.append(f"{node}: {last[:40] or 'no serial output yet'}")
            line = f"booting ({elapsed:.0f} s) " + " | ".join(lasts)
            with self._lock:
                if self.tty:
                    width = max(20, shutil.get_terminal_size().columns - 1)
                    self.stream.write("\r\033[K" + line[:width])
                else:
                    self.stream.write(line + "\n")
                self.stream.flush()

