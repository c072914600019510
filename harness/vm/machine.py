"""A Machine: one QEMU process started from a `run-<name>-vm` start script, driven over the
backdoor shell, with QMP for lifecycle and snapshots. The guest verbs (succeed, wait_for_unit,
...) come from GuestShell; this class is the transport and the lifecycle, as the NixOS test
driver's QemuMachine is."""
from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from . import console, disk_aio, process
from .backdoor import (
    Backdoor, BackdoorEOF, BackdoorRebooted, BackdoorRelayFailed, BackdoorShellExited, BackdoorTimeout,
)
from .command_failures import CommandFailures
from .errors import (
    MachineDied,
    MachineError,
    MachineStartError,
    WaitTimeout,
)
from .guest import DEFAULT_TIMEOUT, GuestShell
from .keep_mode import KeepMode
from .console import SerialConsoleVerbs
from .monitor import MonitorVerbs
from .qemu_options import PortForward, QemuLaunch, accel_flag, bound_forwards, enlarge_send_buffer
from .qmp import QMP, QMPCommandError, QMPConnectionError
from .shell_session import BackdoorShell

__all__ = ["DEFAULT_TIMEOUT", "Machine", "PortForward", "start_all"]


def start_all(*machines: "Machine") -> None:
    """Start machines together: all QEMUs first, then wait for each backdoor (the driver's
    `start_all`)."""
    for machine in machines:
        machine.launch()
    for machine in machines:
        machine.connect()


class Machine(KeepMode, MonitorVerbs, SerialConsoleVerbs, CommandFailures, GuestShell):
    """One VM. By default its backdoor console is a socketpair that only this process holds.
    A `reattachable` machine's console is a unix socket at `<state_dir>/shell` that QEMU
    serves to one client at a time: this process may `detach()`, and any later process may
    `attach()` to the still running QEMU (keep mode: `--keep-vms`, `deploy-harness up`)."""

    def __init__(
        self,
        name: str,
        start_script: Path,
        state_dir: Path,
        *,
        vlans: Mapping[int, Path] | None = None,
        allow_reboot: bool = False,
        accel: str = "tcg",
        forward_ports: Sequence[int] = (),
        boot_timeout: float = 300,
        leash: bool = True,
        reattachable: bool = False,
        backdoor_token: str | None = None,
        accel_options: Sequence[str] | None = None,
        time_scale: float = 1.0,
        snapshot_drive: str | None = None,
    ) -> None:
        self.name = name
        # Slow guests (TCG) stretch every wait of the machine's own: QMP, snapshots, power off.
        self.time_scale = time_scale
        self.start_script = Path(start_script)
        self.state_dir = Path(state_dir)
        self.vlans = dict(vlans or {})
        self.allow_reboot = allow_reboot
        self.accel = accel
        # How the accelerator is given to this machine's start script (the image decides).
        self.accel_options = tuple(accel_options) if accel_options is not None else accel_flag(accel)
        # The start script's -drive that holds snapshots: it gets faster I/O where QEMU can (disk_aio).
        self.snapshot_drive = snapshot_drive
        self.boot_timeout = boot_timeout
        self.leash = leash
        self.reattachable = reattachable
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.shared_dir = self.state_dir / "shared"
        self.disk_image = self.state_dir / f"{name}.qcow2"
        self.serial_log = self.state_dir / "serial.log"
        self.transcript_path = self.state_dir / "transcript.log"
        self.console_socket = self.state_dir / "shell"  # reattachable machines only
        # Host port 0: QEMU binds a free one itself (no window for another process to take it);
        # connect() reads which from QEMU.
        self.forwards = [PortForward(port, 0) for port in forward_ports]
        self.process: subprocess.Popen | None = None
        self.qmp: QMP | None = None
        self._console: socket.socket | None = None  # our end of the console socketpair
        self._backdoor: Backdoor | None = None
        # Given when attaching to a running machine: its shell's trailer function has it.
        self._backdoor_token = backdoor_token or secrets.token_hex(6)
        self._transcript = console.Transcript(self.transcript_path)
        # wait_for_console_text reads the serial log from here (an earlier run's text is history).
        self._serial_offset = self._serial_size()
        self._testinfra = None
        self._stderr_of: str | None = None  # the command whose stderr the guest's file holds
        self._stopped_by_us = False  # shutdown/crash/close, as opposed to QEMU dying
        self._evidence_from = self._serial_offset  # where this boot's (or restore's) text begins
        self._launched_at: float | None = None  # connect() waits boot_timeout from here

    def __repr__(self) -> str:
        return f"<Machine {self.name} {'up' if self.booted else 'down'}>"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def booted(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.booted else None

    def start(self) -> None:
        """Boot and wait until the backdoor shell answers."""
        self.launch()
        self.connect()

    def launch(self) -> None:
        """Start QEMU without waiting for the guest (boot several machines in parallel)."""
        if self.booted:
            return
        self._stopped_by_us = False
        self.forwards = [PortForward(f.guest_port, 0) for f in self.forwards]  # QEMU picks anew
        self._serial_offset = self._evidence_from = self._serial_size()
        self._transcript.note(f"starting {self.start_script}")
        try:
            options = self._launch_options()  # may ask QEMU about io_uring: before the boot clock runs
        except ValueError as exc:  # a wrong NDH_DISK_AIO
            raise MachineStartError(self.name, str(exc)) from exc
        self._launched_at = time.monotonic()
        (self.state_dir / "qmp").unlink(missing_ok=True)
        self.shared_dir.mkdir(exist_ok=True)
        try:
            if self.reattachable:
                self._console, qemu_end = self._listen_on_console_socket()
            else:
                # The console is a socketpair: QEMU gets its end as an inherited fd (no
                # listen/accept race), with a large send buffer, since QEMU drops console
                # output it cannot send.
                self._console, qemu_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                enlarge_send_buffer(qemu_end)
        except OSError as exc:
            self._close_console()
            raise MachineStartError(self.name, f"cannot create the console {self.console_socket}: {exc}") from exc
        try:
            with open(self.serial_log, "ab") as log:
                self.process = process.spawn(
                    [str(self.start_script)],
                    leash=self.leash,
                    cwd=self.state_dir,
                    env=options.environment(qemu_end.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=[qemu_end.fileno()],
                )
        except OSError as exc:
            self._close_console()
            raise MachineStartError(self.name, f"cannot run {self.start_script}: {exc}") from exc
        finally:
            qemu_end.close()

    def _listen_on_console_socket(self) -> tuple[socket.socket, socket.socket]:
        """Bind the console socket ourselves and hand QEMU the listening fd (`server=on`), with
        our first connection already in its backlog: QEMU accepts it as it starts, so no ready
        line can be lost. QEMU accepts a new client whenever the last one has gone (checked
        with QEMU 7.2). Returns (our connection, the listener for QEMU)."""
        self.console_socket.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.console_socket))
            listener.listen(1)
            ours = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.connect(str(self.console_socket))
        except OSError:
            listener.close()
            raise
        return ours, listener

    def connect(self) -> None:
        """Wait for QEMU to connect to the console and for the guest's ready line."""
        if self.process is None or self._console is None:
            raise MachineStartError(self.name, "connect() before launch()")
        started = time.monotonic()
        # One deadline from launch for QMP and the ready line: a NixOS start script builds its
        # store image (mkfs.erofs over the closure) before it execs QEMU, and on a loaded host
        # that alone can take minutes; QMP appears only once QEMU runs.
        deadline = (self._launched_at or started) + self.boot_timeout
        try:
            self._backdoor = Backdoor(self._console, self._alive, self._backdoor_token, self.serial_log)
            self._console = None  # owned by the backdoor now
            self.qmp = QMP(self.state_dir / "qmp")
            self.qmp.connect(timeout=_remaining(deadline), alive=self._alive)
            if self.forwards:
                self.forwards = bound_forwards(self.forwards, self.qmp.hmp("info usernet"))
            self._backdoor.wait_ready(_remaining(deadline))
        except (BackdoorEOF, BackdoorTimeout, BackdoorRelayFailed, QMPConnectionError, QMPCommandError, OSError,
                ValueError) as exc:
            if isinstance(exc, BackdoorEOF):
                # The console closes a moment before QEMU exits: let it, to report its status.
                process.wait_for_exit(self.process, 2)
            status = self._stop_process()
            why = f"QEMU exited with status {status}" if status is not None else str(exc)
            raise MachineStartError(
                self.name,
                f"did not become ready: {why} ({exc}). Start script: {self.start_script}; "
                f"serial log: {self.serial_log}{disk_aio.hint(self.evidence_tail())}",
                self.evidence_tail(),
            ) from exc
        self._transcript.note(f"backdoor ready after {time.monotonic() - started:.2f} s")

    def shutdown(self, timeout: float | None = None) -> None:
        """Power off cleanly and wait for QEMU to exit (killed if it does not in time; default
        120 s, scaled)."""
        if not self.booted:
            return
        timeout = 120 * self.time_scale if timeout is None else timeout
        self._transcript.note("shutdown")
        assert self._backdoor is not None and self.process is not None
        try:
            self._backdoor.send_raw("poweroff")
        except BackdoorEOF:
            pass
        clean = process.wait_for_exit(self.process, timeout)
        self._stopped_by_us = True
        self._stop_process()
        if not clean:
            raise MachineError(self.name, f"did not power off within {timeout} s; killed QEMU")

    def wait_for_shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait for the guest to power off by itself (this does not start a shutdown)."""
        if not self.booted:
            return
        assert self.process is not None
        if not process.wait_for_exit(self.process, timeout):
            raise WaitTimeout(self.name, f"did not power off within {timeout} s", 1, "", serial_tail=self.evidence_tail())
        self._stopped_by_us = True
        self._stop_process()

    def crash(self) -> None:
        """Stop QEMU at once, as pulling the plug."""
        if not self.booted:
            return
        self._transcript.note("crash")
        if self.qmp is not None:  # a detached machine has none: kill it directly
            try:
                self.qmp.execute("quit", timeout=10 * self.time_scale)
            except (QMPConnectionError, QMPCommandError):
                pass
        self._stopped_by_us = True
        self._stop_process()

    def reboot(self) -> None:
        """Press Ctrl+Alt+Delete and wait for the rebooted guest's backdoor."""
        if not self.allow_reboot:
            raise MachineError(
                self.name,
                "started without allow_reboot: QEMU runs with -no-reboot and would exit on a "
                "guest reboot. Declare the node with allow_reboot=True to reboot it.",
            )
        self._require_up()
        self._transcript.note("reboot (ctrl-alt-delete)")
        self.send_key("ctrl-alt-delete")
        assert self._backdoor is not None
        try:
            self._backdoor.wait_ready(self.boot_timeout)
        except (BackdoorEOF, BackdoorTimeout, BackdoorRelayFailed) as exc:
            raise MachineDied(
                self.name, f"did not come back from reboot: {exc}", self.evidence_tail()
            ) from exc

    def close(self) -> None:
        """Kill QEMU if still running and release files (teardown; no clean shutdown)."""
        self._stopped_by_us = True
        self._stop_process()
        self._transcript.close()

    # -- commands ------------------------------------------------------------------------

    def execute_bytes(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
        return self._round_trip(Backdoor.run, command, timeout)

    def execute_sh(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes, bytes]:
        return self._round_trip(Backdoor.run_sh, command, timeout)

    def _round_trip(self, run, command: str, timeout: float | None):
        """`run(backdoor, command, timeout)`, its failures as machine errors, noted in the
        transcript; the command's stderr stays in the guest for `last_stderr`."""
        self._require_up()
        backdoor = self._backdoor
        assert backdoor is not None
        started = time.monotonic()
        try:
            result = run(backdoor, command, timeout)
        except (BackdoorTimeout, BackdoorEOF, BackdoorRebooted, BackdoorShellExited, BackdoorRelayFailed) as exc:
            raise self._command_failure(backdoor, command, timeout, exc, time.monotonic() - started) from exc
        self._stderr_of = command
        self._transcript.command(command, result[0], result[1], time.monotonic() - started)
        return result

    def last_stderr(self) -> str:
        """The end of the last command's stderr, read from the guest (one round trip)."""
        if self._stderr_of is None or self._backdoor is None or self._backdoor.out_of_step:
            return ""
        try:
            return self._backdoor.read_stderr().decode("utf-8", "replace")
        except (BackdoorTimeout, BackdoorEOF, BackdoorRebooted):
            return ""

    def evidence_tail(self) -> str:
        """The serial console since the last start or restore (earlier text is history)."""
        return console.excerpt(self.serial_log, start=self._evidence_from)

    def shell_interact(self) -> int:
        """A root shell on this machine for the person running the test (as the driver's
        `shell_interact`; Ctrl-] or Ctrl-D returns to the test)."""
        return BackdoorShell(self, "this test", "machine.shell_interact()").interactive()

    def forwarded_port(self, guest_port: int) -> int:
        for forward in self.forwards:
            if forward.guest_port == guest_port:
                return forward.host_port
        raise KeyError(f"machine {self.name} forwards no guest port {guest_port}")

    def _launch_options(self) -> QemuLaunch:
        return QemuLaunch(
            state_dir=self.state_dir,
            disk_image=self.disk_image,
            shared_dir=self.shared_dir,
            accel_options=self.accel_options,
            drive_options=disk_aio.drive_options(self.snapshot_drive),
            allow_reboot=self.allow_reboot,
            reattachable=self.reattachable,
            forwards=tuple(self.forwards),
            vlans=self.vlans,
        )

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _require_up(self) -> None:
        if self.process is not None and not self.booted and not self._stopped_by_us:
            status = self._stop_process()
            raise MachineDied(
                self.name, f"QEMU has exited (status {status}) since the last command", self.evidence_tail()
            )
        if not self.booted or self._backdoor is None:
            raise MachineError(self.name, "is not running: call start() first")

    def _stop_process(self) -> int | None:
        """Kill QEMU if it runs, reap it, drop connections. Returns its exit status."""
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                process.kill(self.process)
            elif isinstance(self.process, subprocess.Popen):
                process.stop(self.process)  # our child: reaps it and clears its group
            # An adopted QEMU that is gone gets no signal: its pid may belong to another process.
            status = self.process.returncode
        for closable in (self._backdoor, self.qmp):
            if closable is not None:
                closable.close()
        self._backdoor = None
        self.qmp = None
        self._close_console()
        return status

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None


def _remaining(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())
