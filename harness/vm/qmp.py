"""A small QMP client: QEMU's JSON monitor over a unix socket, one command at a time."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable


class QMPConnectionError(RuntimeError):
    pass


class QMPCommandError(RuntimeError):
    def __init__(self, command: str, error: dict) -> None:
        self.error = error
        super().__init__(f"QMP {command} failed: {error.get('class')}: {error.get('desc')}")


class QMP:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict] = []
        self._sock: socket.socket | None = None
        self._file = None

    def connect(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Connect once QEMU has created the socket; give up if QEMU exits first."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if not alive():
                    raise QMPConnectionError("QEMU exited before its QMP socket was ready")
                if time.monotonic() > deadline:
                    raise QMPConnectionError(f"no QMP socket at {self.path} after {timeout:.0f} s")
                time.sleep(0.01)
        sock.settimeout(timeout)
        self._sock = sock
        self._file = sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPConnectionError(f"unexpected QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 600) -> Any:
        if self._file is None:
            raise QMPConnectionError("QMP is not connected")
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        assert self._sock is not None
        self._sock.settimeout(timeout)
        self._file.write(json.dumps(message).encode() + b"\n")
        self._file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QMPCommandError(command, reply["error"])
            elif "return" in reply:
                return reply["return"]

    def hmp(self, command_line: str, timeout: float = 600) -> str:
        """A human monitor command (savevm, loadvm, ...) through QMP; returns its text output."""
        return self.execute("human-monitor-command", {"command-line": command_line}, timeout)

    def _read(self) -> dict:
        assert self._file is not None
        try:
            line = self._file.readline()
        except (socket.timeout, OSError) as exc:
            raise QMPConnectionError(f"QMP read failed: {exc}") from exc
        if not line:
            raise QMPConnectionError("QMP connection closed (QEMU exited)")
        return json.loads(line)

    def close(self) -> None:
        for closable in (self._file, self._sock):
            try:
                if closable is not None:
                    closable.close()
            except OSError:
                pass
        self._file = self._sock = None
