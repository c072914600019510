"""Keeps the backdoor console drained. QEMU drops a virtconsole's output when the host socket
is full instead of throttling the guest (hw/char/virtio-console.c, flush_buf: console ports
are never throttled), so output must be read as fast as the guest writes it, also while
Python is busy elsewhere. A thread reads into memory; pexpect reads from that buffer."""
from __future__ import annotations

import socket
import threading
import time

import pexpect
import pexpect.spawnbase


class ConsoleReader(threading.Thread):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="backdoor-console-reader", daemon=True)
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False
        self._ready = threading.Condition()

    def run(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except OSError:
                data = b""
            with self._ready:
                if data:
                    self._buffer += data
                else:
                    self._eof = True
                self._ready.notify_all()
            if not data:
                return

    def read(self, size: int, timeout: float | None) -> bytes:
        """Up to `size` buffered bytes; waits up to `timeout` for some. Raises pexpect's
        TIMEOUT or EOF, as a spawn's read_nonblocking does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._buffer:
                if self._eof:
                    raise pexpect.EOF("the console connection closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise pexpect.TIMEOUT("no console output")
                self._ready.wait(remaining)
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    def take(self) -> bytes:
        """Whatever is buffered now, without waiting."""
        with self._ready:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data

    def discard(self) -> None:
        with self._ready:
            self._buffer.clear()


class ReaderSpawn(pexpect.spawnbase.SpawnBase):
    """pexpect's expect machinery over a ConsoleReader."""

    def __init__(self, reader: ConsoleReader) -> None:
        super().__init__(timeout=None, maxread=1 << 20)
        self._reader = reader

    def pull(self) -> None:
        """Move what the reader holds into the match buffer, without waiting: an expect with
        timeout 0 searches only that buffer (pexpect reads nothing once the time is up)."""
        data = self._reader.take()
        if data:
            self._log(data, "read")
            self.buffer = self.buffer + data

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if timeout == -1:
            timeout = self.timeout
        data = self._reader.read(size, timeout)
        self._log(data, "read")
        return data
