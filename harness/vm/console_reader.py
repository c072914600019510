"""Keeps the backdoor console drained. QEMU drops a virtconsole's output when the host socket
is full instead of throttling the guest (hw/char/virtio-console.c, flush_buf: console ports
are never throttled), so output must be read as fast as the guest writes it, also while
Python is busy elsewhere. A thread reads into memory; pexpect reads from that buffer.

While pexpect waits for output, its own thread reads the socket and the reader thread stands
aside: handing each answer from one thread to the other cost ~0.3 ms, as much as a builtin
command's whole round trip under TCG. One lock covers each receive and its append, so bytes
keep their order whichever thread takes them. The reader thread may still take bytes while a
read() is starting (its select saw them before it stood aside); it then says so on a pipe that
read() selects on as well, or read() would wait in select for bytes already in the buffer."""
from __future__ import annotations

import os
import select
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
        self._receiving = threading.Lock()
        self._waiter_reads = False  # a read() is reading the socket itself: stand aside
        # Wakes the reader thread from its select when a read() takes over.
        self._wake_read, self._wake_write = os.pipe()
        # Wakes a read() from its select when the reader thread took bytes meanwhile. Never
        # blocks the thread: a byte already waiting there wakes the read() just as well.
        self._taken_read, self._taken_write = os.pipe()
        os.set_blocking(self._taken_write, False)

    def run(self) -> None:
        try:
            while True:
                with self._ready:
                    while self._waiter_reads and not self._eof:
                        self._ready.wait()
                    if self._eof:
                        return
                readable = self._select([self._sock, self._wake_read], None)
                if readable is None:
                    return
                if self._wake_read in readable:
                    os.read(self._wake_read, 4096)
                if self._sock in readable and not self._receive(by_reader_thread=True):
                    return
        finally:
            self._end()
            with self._ready:
                os.close(self._wake_read)
                os.close(self._wake_write)
                self._wake_write = -1
                os.close(self._taken_write)
                self._taken_write = -1

    def _select(self, sources: list, timeout: float | None) -> list | None:
        """select(); None once the socket is closed (by close(), from another thread)."""
        try:
            readable, _, _ = select.select(sources, [], [], timeout)
        except (OSError, ValueError):  # ValueError: a closed socket's fileno() is -1
            return None
        return readable

    def _end(self) -> None:
        with self._ready:
            self._eof = True
            self._ready.notify_all()

    def _receive(self, by_reader_thread: bool = False) -> bool:
        """Take what the socket holds (never waiting); False at the end of the connection."""
        with self._receiving:
            try:
                data = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                data = b""
            with self._ready:
                if data:
                    self._buffer += data
                else:
                    self._eof = True
                if by_reader_thread and self._waiter_reads and self._taken_write >= 0:
                    try:
                        os.write(self._taken_write, b".")
                    except BlockingIOError:
                        pass
                self._ready.notify_all()
            return bool(data)

    def read(self, size: int, timeout: float | None) -> bytes:
        """Up to `size` buffered bytes; waits up to `timeout` for some, reading the socket
        itself. Raises pexpect's TIMEOUT or EOF, as a spawn's read_nonblocking does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            if not self._buffer and not self._eof:
                self._waiter_reads = True
                if self._wake_write >= 0:
                    os.write(self._wake_write, b".")
        try:
            while True:
                with self._ready:
                    if self._buffer:
                        data = bytes(self._buffer[:size])
                        del self._buffer[:size]
                        return data
                    if self._eof:
                        raise pexpect.EOF("the console connection closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise pexpect.TIMEOUT("no console output")
                readable = self._select([self._sock, self._taken_read], remaining)
                if readable is None:
                    self._end()
                elif self._taken_read in readable:
                    os.read(self._taken_read, 4096)  # the bytes are in the buffer: look again
                elif readable:
                    self._receive()
        finally:
            with self._ready:
                self._waiter_reads = False
                self._ready.notify_all()

    def close(self) -> None:
        """Once the thread has ended (the connection's end, then join): the pipe read() selects
        on, closed only now so that no read() can select on a reused fd number."""
        if not self.is_alive() and self._taken_read >= 0:
            os.close(self._taken_read)
            self._taken_read = -1

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
        # pexpect sleeps this long after every read (a pty's bytes arrive in pieces); the
        # reader's buffer already holds whatever arrived, and the nap (0.1 ms asked, ~0.2 ms
        # slept) was a third of a builtin command's round trip.
        self.delayafterread = None

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
