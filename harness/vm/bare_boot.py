"""A guest without an operating system, to ask "does this accelerator run guest code?" when no
image can be had (no micro image, no Nix): QEMU's own BIOS (SeaBIOS, shipped with every QEMU
package) boots a 512-byte boot sector that writes a marker to the first serial port and then
asks QEMU to exit through the isa-debug-exit device. QEMU exits with status (value << 1) | 1,
so a run that printed the marker and exited with that status really executed the BIOS and our
code on a vCPU of the requested accelerator. A hang (no exit within the timeout) or an abort
(an MSR assertion under KVM) is a verdict too."""
from __future__ import annotations

import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import process

MARKER = b"ndh-bare-boot-ok"
EXIT_PORT = 0xF4
EXIT_VALUE = 0x2A
EXIT_STATUS = (EXIT_VALUE << 1) | 1  # isa-debug-exit: QEMU exits with (value << 1) | 1
LOAD_ADDRESS = 0x7C00  # where the BIOS loads a boot sector


def boot_sector() -> bytes:
    """16-bit real-mode code, assembled by hand (offsets in the comments):
         0 cli; xor ax,ax; mov ds,ax; cld; mov si,msg; mov dx,0x3f8
        12 loop: lodsb; test al,al; jz done; out dx,al; jmp loop
        20 done: mov dx,EXIT_PORT; mov al,EXIT_VALUE; out dx,al
        26 hang: hlt; jmp hang
        29 msg: MARKER, "\\r\\n", 0"""
    message_at = LOAD_ADDRESS + 29
    code = bytes([
        0xFA,                                            # cli
        0x31, 0xC0,                                      # xor ax, ax
        0x8E, 0xD8,                                      # mov ds, ax
        0xFC,                                            # cld
        0xBE, message_at & 0xFF, message_at >> 8,        # mov si, msg
        0xBA, 0xF8, 0x03,                                # mov dx, 0x3f8 (COM1 data)
        0xAC,                                            # loop: lodsb
        0x84, 0xC0,                                      # test al, al
        0x74, 0x03,                                      # jz done (+3)
        0xEE,                                            # out dx, al
        0xEB, 0xF8,                                      # jmp loop (-8)
        0xBA, EXIT_PORT, 0x00,                           # done: mov dx, EXIT_PORT
        0xB0, EXIT_VALUE,                                # mov al, EXIT_VALUE
        0xEE,                                            # out dx, al
        0xF4,                                            # hang: hlt
        0xEB, 0xFD,                                      # jmp hang (-3)
    ])
    assert len(code) == 29
    sector = code + MARKER + b"\r\n\x00"
    return sector.ljust(510, b"\x00") + b"\x55\xaa"


@dataclass(frozen=True)
class BareBootResult:
    ran: bool  # the guest printed the marker and exited through isa-debug-exit
    symptom: str  # what happened, in words (for a reason line)


def bare_boot(accel: str, timeout: float, qemu: str = "qemu-system-x86_64",
              cpu: str = "max") -> BareBootResult:
    """Boot the boot sector under `accel` with `-cpu <cpu>`; never raises for a guest failure."""
    with tempfile.TemporaryDirectory(prefix="ndh-bare-boot-") as scratch:
        disk = Path(scratch, "boot.img")
        disk.write_bytes(boot_sector())
        argv = [
            qemu, "-accel", accel, "-cpu", cpu, "-m", "16", "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", "stdio", "-monitor", "none",
            "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04",
            "-drive", f"file={disk},format=raw,if=ide,index=0,media=disk",
        ]
        proc = process.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return BareBootResult(False, f"hung: no exit from the boot sector within {timeout:g} s")
        finally:
            process.stop(proc, grace=0)  # ends it if it hangs, unregisters it either way
    if MARKER in out and proc.returncode == EXIT_STATUS:
        return BareBootResult(True, f"ran a boot sector under {accel} (BIOS, then our code, exit via isa-debug-exit)")
    detail = err.decode(errors="replace").strip().splitlines()
    last = detail[-1][:160] if detail else "no message on stderr"
    if proc.returncode < 0:
        how = f"QEMU was killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"QEMU exited with status {proc.returncode}"
    return BareBootResult(False, f"failed: {how} ({last})")
