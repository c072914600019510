"""A VLAN: one `vde_switch` in hub mode, as the NixOS test driver runs it (vlan.py upstream).
Its stdin is a pipe we hold: vde_switch exits by itself when that closes, so a switch never
outlives the process that started it."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from . import adopted, process


class VdeSwitchError(RuntimeError):
    pass


class VdeSwitch:
    def __init__(self, number: int, socket_dir: Path, leash: bool = True) -> None:
        self.number = number
        self.socket_dir = Path(socket_dir)
        self.leash = leash
        self.process: subprocess.Popen | None = None
        self._daemon: tuple[int, int] | None = None  # keep mode: (pid, start time) of the daemon

    def start(self, timeout: float = 10) -> None:
        self.socket_dir.parent.mkdir(parents=True, exist_ok=True)
        argv = ["vde_switch", "--sock", str(self.socket_dir), "--dirmode", "0700", "--hub"]
        if not self.leash:
            # Left running for the user: no stdin to close, so it runs as a daemon.
            argv += ["--daemon", "--pidfile", str(self.socket_dir) + ".pid"]
        try:
            self.process = process.spawn(
                argv,
                leash=self.leash,
                stdin=subprocess.PIPE if self.leash else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise VdeSwitchError("vde_switch is not installed (Debian: vde2); run ci/bootstrap") from exc
        if not self.leash:
            # The foreground vde_switch forks the daemon and exits: reap it, and fail at once if
            # it could not start (otherwise it would sit as a zombie and we would wait in vain).
            try:
                status = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
            if status:
                raise VdeSwitchError(f"vde_switch --daemon for VLAN {self.number} exited with {status}")
        deadline = time.monotonic() + timeout
        while not (self.socket_dir / "ctl").exists() or not (self.leash or self._note_daemon()):
            if self.leash and self.process.poll() is not None:
                raise VdeSwitchError(f"vde_switch for VLAN {self.number} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise VdeSwitchError(f"vde_switch for VLAN {self.number} made no socket in {timeout} s")
            time.sleep(0.005)

    def _note_daemon(self) -> bool:
        """Remember the daemon's pid and start time once its pidfile is written."""
        if self._daemon is None:
            try:
                pid = int(Path(str(self.socket_dir) + ".pid").read_text())
            except (FileNotFoundError, ValueError):
                return False
            started = adopted.start_time(pid)
            if started is None:
                return False
            self._daemon = (pid, started)
        return True

    @property
    def pid(self) -> int | None:
        if self.leash:
            return self.process.pid if self.process and self.process.poll() is None else None
        if self._daemon is not None and adopted.is_running(*self._daemon):
            return self._daemon[0]
        return None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.leash:
            if self.process.stdin:
                self.process.stdin.close()  # vde_switch cleans up and exits on EOF
            if not process.wait_for_exit(self.process, 2):
                process.kill(self.process)
            else:
                process.stop(self.process)
        else:
            self._stop_daemon()
        self.process = None

    def _stop_daemon(self) -> None:
        """A daemonized switch (keep mode) is not our child: end it by pid and start time, so a
        pid that has since gone to another process gets no signal."""
        self._note_daemon()
        if self._daemon is not None:
            adopted.terminate([self._daemon], grace=2)
        Path(str(self.socket_dir) + ".pid").unlink(missing_ok=True)
