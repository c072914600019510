"""A process without io_uring, as a container whose seccomp profile forbids it (Docker's
default) runs QEMU: a seccomp filter that fails io_uring_setup with EPERM, inherited by every
child. Irreversible, so only for a child process a test starts (x86-64 Linux)."""
from __future__ import annotations

import ctypes
import errno
import struct

IO_URING_SETUP = 425  # x86-64 syscall number
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
RET_K = 0x06


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def forbid_io_uring() -> None:
    """From now on, this process and its children get EPERM from io_uring_setup."""
    program = b"".join([
        _instruction(LD_W_ABS, 0, 0, 4),                   # A = seccomp_data.arch
        _instruction(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),      # x86-64: go on; else allow
        _instruction(RET_K, 0, 0, SECCOMP_RET_ALLOW),
        _instruction(LD_W_ABS, 0, 0, 0),                   # A = seccomp_data.nr
        _instruction(JEQ_K, 0, 1, IO_URING_SETUP),
        _instruction(RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        _instruction(RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
    filters = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    word = ctypes.c_ulong
    if libc.prctl(PR_SET_NO_NEW_PRIVS, word(1), word(0), word(0), word(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buffer = ctypes.create_string_buffer(fprog, len(fprog))
    if libc.prctl(PR_SET_SECCOMP, word(SECCOMP_MODE_FILTER), buffer, word(0), word(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
