"""The console reader's hand-over between its thread and a read() (harness/vm/console_reader.py),
on a socket pair: no QEMU needed. The interleavings are forced, not hoped for."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from harness.vm.console_reader import ConsoleReader

LIVENESS = 20  # seconds: far beyond any scheduling delay; a read that takes this long is stuck


@pytest.fixture
def pair():
    ours, guest = socket.socketpair()
    reader = ConsoleReader(ours)
    reader.start()
    yield reader, guest
    guest.close()
    reader.join(timeout=5)
    ours.close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_bytes_the_reader_thread_takes_while_a_read_starts_wake_that_read(pair):
    """The reader thread's select saw bytes just before read() took over; it takes them after
    read() found the buffer empty and before read() selects. read() must not wait for more."""
    reader, guest = pair
    waiter_selects = threading.Event()
    real_select = reader._select

    def select(sources, timeout):
        if threading.current_thread() is waiter:
            # read() found the buffer empty; now the reader thread takes the bytes it saw.
            reader._receiving.release()
            wait_for(lambda: bool(reader._buffer), "the reader thread did not take the bytes")
            waiter_selects.set()
        return real_select(sources, timeout)

    reader._select = select
    reader._receiving.acquire()  # the reader thread wakes for the bytes, then waits here
    guest.sendall(b"answer\n")
    # The reader thread now waits for the lock with the bytes in hand, whether or not it has
    # left its select yet (the wake-up below then comes with the bytes).
    got = []
    waiter = threading.Thread(target=lambda: got.append(reader.read(4096, timeout=None)), daemon=True)
    waiter.start()
    waiter.join(timeout=LIVENESS)
    assert waiter_selects.is_set(), "the forced interleaving did not happen"
    assert not waiter.is_alive(), "read() waited in select for bytes already in the buffer"
    assert got == [b"answer\n"]


def test_a_read_takes_what_arrives_while_it_waits(pair):
    reader, guest = pair
    got = []
    waiter = threading.Thread(target=lambda: got.append(reader.read(4096, timeout=None)), daemon=True)
    waiter.start()
    time.sleep(0.1)
    guest.sendall(b"late\n")
    waiter.join(timeout=LIVENESS)
    assert got == [b"late\n"]


def test_bytes_that_arrive_between_reads_are_kept_in_order(pair):
    reader, guest = pair
    guest.sendall(b"one\n")
    wait_for(lambda: bool(reader._buffer), "the reader thread keeps bytes nobody asked for yet")
    guest.sendall(b"two\n")
    got = b""
    while got != b"one\ntwo\n":
        got += reader.read(4096, timeout=LIVENESS)
