"""A Machine: one QEMU process started from a `run-<name>-vm` start script, driven over the
backdoor shell, with QMP for lifecycle and snapshots. Verbs follow the NixOS test driver."""
from __future__ import annotations

import base64
import io
import os
import re
import secrets
import shlex
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from . import console, process
from .backdoor import (
    Backdoor,
    BackdoorEOF,
    BackdoorRebooted,
    BackdoorTimeout,
)
from .errors import (
    CommandFailed,
    CommandTimeout,
    MachineBroken,
    MachineDied,
    MachineError,
    MachineStartError,
    QMPError,
)
from .qmp import QMP, QMPCommandError, QMPConnectionError

DEFAULT_TIMEOUT = 900  # seconds, as the NixOS test driver


@dataclass(frozen=True)
class PortForward:
    """Host 127.0.0.1:<host_port> -> guest <guest_port> over QEMU user networking."""

    guest_port: int
    host_port: int


class Machine:
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
    ) -> None:
        self.name = name
        self.start_script = Path(start_script)
        self.state_dir = Path(state_dir)
        self.vlans = dict(vlans or {})
        self.allow_reboot = allow_reboot
        self.accel = accel
        self.boot_timeout = boot_timeout
        self.leash = leash
        self.reattachable = reattachable
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.shared_dir = self.state_dir / "shared"
        self.disk_image = self.state_dir / f"{name}.qcow2"
        self.serial_log = self.state_dir / "serial.log"
        self.transcript_path = self.state_dir / "transcript.log"
        self.console_socket = self.state_dir / "shell"  # reattachable machines only
        self.forwards = [PortForward(port, _free_local_port()) for port in forward_ports]
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
        self._serial_offset = self._serial_size()
        self._transcript.note(f"starting {self.start_script}")
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
                _enlarge_send_buffer(qemu_end)
        except OSError as exc:
            self._close_console()
            raise MachineStartError(self.name, f"cannot create the console {self.console_socket}: {exc}") from exc
        try:
            with open(self.serial_log, "ab") as log:
                self.process = process.spawn(
                    [str(self.start_script)],
                    leash=self.leash,
                    cwd=self.state_dir,
                    env=self._environment(qemu_end.fileno()),
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
        try:
            self._backdoor = Backdoor(self._console, self._alive, self._backdoor_token)
            self._console = None  # owned by the backdoor now
            self.qmp = QMP(self.state_dir / "qmp")
            self.qmp.connect(timeout=30, alive=self._alive)
            self._backdoor.wait_ready(self.boot_timeout)
        except (BackdoorEOF, BackdoorTimeout, QMPConnectionError, OSError) as exc:
            if isinstance(exc, BackdoorEOF):
                # The console closes a moment before QEMU exits: let it, to report its status.
                process.wait_for_exit(self.process, 2)
            status = self._stop_process()
            why = f"QEMU exited with status {status}" if status is not None else str(exc)
            raise MachineStartError(
                self.name,
                f"did not become ready: {why} ({exc}). Start script: {self.start_script}; "
                f"serial log: {self.serial_log}",
                console.excerpt(self.serial_log),
            ) from exc
        self._transcript.note(f"backdoor ready after {time.monotonic() - started:.2f} s")

    def shutdown(self, timeout: float = 120) -> None:
        """Power off cleanly and wait for QEMU to exit (killed if it does not in time)."""
        if not self.booted:
            return
        self._transcript.note("shutdown")
        assert self._backdoor is not None and self.process is not None
        try:
            self._backdoor.send_raw("poweroff")
        except BackdoorEOF:
            pass
        clean = process.wait_for_exit(self.process, timeout)
        self._stop_process()
        if not clean:
            raise MachineError(self.name, f"did not power off within {timeout} s; killed QEMU")

    def crash(self) -> None:
        """Stop QEMU at once, as pulling the plug."""
        if not self.booted:
            return
        self._transcript.note("crash")
        if self.qmp is not None:  # a detached machine has none: kill it directly
            try:
                self.qmp.execute("quit", timeout=10)
            except (QMPConnectionError, QMPCommandError):
                pass
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
        except (BackdoorEOF, BackdoorTimeout) as exc:
            raise MachineDied(
                self.name, f"did not come back from reboot: {exc}", console.excerpt(self.serial_log)
            ) from exc

    def close(self) -> None:
        """Kill QEMU if still running and release files (teardown; no clean shutdown)."""
        self._stop_process()
        self._transcript.close()

    # -- keep mode: let go of a running machine, take it (back) from any process ----------

    @property
    def backdoor_token(self) -> str:
        """The token of this machine's trailer function (stored to attach from elsewhere)."""
        return self._backdoor_token

    def detach(self) -> None:
        """Close the console and QMP connections and leave QEMU running, so that another
        process can attach (QEMU serves one client at a time)."""
        self._require_reattachable()
        # Forget them before closing: a command running in another thread then sees that
        # the EOF is ours (execute_bytes), not QEMU's death.
        backdoor, qmp = self._backdoor, self.qmp
        self._backdoor = None
        self.qmp = None
        for closable in (backdoor, qmp):
            if closable is not None:
                closable.close()
        self._close_console()
        if backdoor is not None:
            self._transcript.note(f"detached (pid {os.getpid()})")

    def attach(self, running=None, timeout: float = 30, resync: bool = True) -> None:
        """Drive a reattachable machine that is already running: connect to its console socket
        and QMP and resynchronise with the backdoor shell (its trailer function exists; the
        ready line is long gone). `running` is its QEMU when another process started it (a
        Popen-like object, e.g. adopted.AdoptedProcess). `resync=False` skips the round trip
        (`restore` resynchronises by itself, also when the shell is stuck in a command)."""
        self._require_reattachable()
        if running is not None:
            self.process = running
        if not self.booted:
            raise MachineError(
                self.name,
                f"is not running (its QEMU has exited); serial log: {self.serial_log}",
                console.excerpt(self.serial_log),
            )
        if self._backdoor is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.console_socket))
        except OSError as exc:
            sock.close()
            raise MachineError(self.name, f"cannot connect to its console {self.console_socket}: {exc}") from exc
        self._backdoor = Backdoor(sock, self._alive, self._backdoor_token)
        try:
            self.qmp = QMP(self.state_dir / "qmp")
            self.qmp.connect(timeout=timeout, alive=self._alive)
            if resync:
                self._backdoor.resume(timeout)
        except (BackdoorEOF, BackdoorTimeout, QMPConnectionError, OSError) as exc:
            self.detach()
            if not self.booted:
                raise MachineDied(
                    self.name, f"QEMU exited while attaching ({exc})", console.excerpt(self.serial_log)
                ) from exc
            raise MachineError(
                self.name,
                f"cannot attach: {exc}. QEMU serves its console and QMP to one client at a "
                "time: is another process attached? If not, a command of an earlier session is "
                "still running in the guest: wait for it, or restore a snapshot.",
            ) from exc
        self._transcript.note(f"attached (pid {os.getpid()})")

    def _require_reattachable(self) -> None:
        if not self.reattachable:
            raise MachineError(
                self.name,
                "its console belongs to the process that started it; only machines started "
                "with reattachable=True (keep mode) can be detached and attached",
            )

    # -- commands ------------------------------------------------------------------------

    def execute(
        self, command: str, check_return: bool = True, timeout: float | None = DEFAULT_TIMEOUT
    ) -> tuple[int, str]:
        """Run `command` in a subshell of the backdoor root shell (stdin /dev/null, stderr to
        the serial log). Returns (exit status, stdout); undecodable bytes are kept as
        surrogate escapes (`out.encode("utf-8", "surrogateescape")` gives them back)."""
        status, output = self.execute_bytes(command, timeout)
        return status, output.decode("utf-8", "surrogateescape")

    def execute_bytes(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
        self._require_up()
        backdoor = self._backdoor
        assert backdoor is not None
        started = time.monotonic()
        try:
            status, output = backdoor.run(command, timeout)
        except BackdoorTimeout as exc:
            self._transcript.command(command, "TIMEOUT", b"", time.monotonic() - started)
            if backdoor.out_of_step and "earlier" in str(exc):
                raise MachineBroken(
                    self.name,
                    f"cannot run `{command}`: an earlier command that timed out is still "
                    "running. Restore a snapshot or reboot the machine.",
                ) from exc
            raise CommandTimeout(
                self.name,
                f"command `{command}` did not finish within {timeout} s. The machine is out of "
                "step until it finishes; restore a snapshot or reboot it to go on.",
            ) from exc
        except BackdoorEOF as exc:
            if self.reattachable and self._backdoor is not backdoor:
                # detach() closed the console under this command (another thread): QEMU runs on.
                raise MachineError(
                    self.name, f"detached while `{command}` was running; it goes on in the guest"
                ) from exc
            self._transcript.command(command, "QEMU EXITED", b"", time.monotonic() - started)
            status_code = self._stop_process()
            raise MachineDied(
                self.name,
                f"QEMU exited (status {status_code}) while running `{command}`",
                console.excerpt(self.serial_log),
            ) from exc
        except BackdoorRebooted as exc:
            self._transcript.command(command, "GUEST REBOOTED", b"", time.monotonic() - started)
            backdoor.setup(self.boot_timeout)  # its ready line was already read
            raise MachineDied(
                self.name,
                f"the guest rebooted while running `{command}` (panic or reboot)",
                console.excerpt(self.serial_log),
            ) from exc
        self._transcript.command(command, status, output, time.monotonic() - started)
        return status, output

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise CommandFailed on a non-zero exit. Returns joined stdout."""
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                raise CommandFailed(
                    self.name, f"command `{command}` failed (exit code {status})", status, out
                )
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        """Run each command; raise CommandFailed if one succeeds. Returns joined stdout."""
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise CommandFailed(
                    self.name, f"command `{command}` unexpectedly succeeded", status, out
                )
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return self._poll(command, lambda status: status == 0, timeout, "succeed")

    def wait_until_fails(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return self._poll(command, lambda status: status != 0, timeout, "fail")

    def _poll(self, command: str, done, timeout: float, verb: str) -> str:
        retrying = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1),
            retry=retry_if_result(lambda result: not done(result[0])),
        )
        try:
            status, output = retrying(self.execute, command, timeout=timeout)
        except RetryError as exc:
            status, output = exc.last_attempt.result()
            raise CommandFailed(
                self.name,
                f"command `{command}` did not {verb} within {timeout} s (last exit code {status})",
                status,
                output,
            ) from None
        return output

    def wait_for_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_until_succeeds(f"test -e {shlex.quote(path)}", timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a TCP connect to addr:port succeeds (bash's /dev/tcp: no nc needed)."""
        self.wait_until_succeeds(self._tcp_probe(addr, port), timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_until_fails(self._tcp_probe(addr, port), timeout)

    @staticmethod
    def _tcp_probe(addr: str, port: int) -> str:
        return f"exec 2>/dev/null 3<>/dev/tcp/{shlex.quote(addr)}/{int(port)}"

    def wait_for_unit(self, unit: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until a systemd unit is active; fail at once if it failed or is inactive with
        no job pending (as the NixOS test driver does)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            info = self.unit_info(unit)
            state = info.get("ActiveState")
            if state == "active":
                return
            if state == "failed":
                raise CommandFailed(self.name, f'unit "{unit}" reached state "failed"', 3, "")
            if state == "inactive" and self._no_pending_jobs(unit):
                raise CommandFailed(
                    self.name, f'unit "{unit}" is inactive and there are no pending jobs', 3, ""
                )
            if time.monotonic() > deadline:
                raise CommandFailed(
                    self.name, f'unit "{unit}" not active within {timeout} s (state {state})', 1, ""
                )
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def unit_info(self, unit: str) -> dict[str, str]:
        out = self.succeed(f"systemctl --no-pager show {shlex.quote(unit)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _no_pending_jobs(self, unit: str) -> bool:
        status, out = self.execute(f"systemctl --no-pager list-jobs --no-legend {shlex.quote(unit)}")
        return status == 0 and not out.strip()

    def copy_from_host(self, source: str | Path, target: str) -> None:
        """Copy a host file or directory to `target` in the guest, through the backdoor (no 9p
        share, so snapshots keep working). Suited to configuration-sized data."""
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"copy_from_host: {source} does not exist on the host")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(source, arcname="x")
        payload = base64.encodebytes(buffer.getvalue()).decode()
        quoted = shlex.quote(target)
        self.succeed(
            f"set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT\n"
            f"base64 -d <<'__NDH_EOF__' | tar -x -C \"$d\"\n{payload}__NDH_EOF__\n"
            f"mkdir -p \"$(dirname {quoted})\"; rm -rf {quoted}; mv \"$d/x\" {quoted}"
        )

    # -- monitor, snapshots --------------------------------------------------------------

    def send_monitor_command(self, command: str) -> str:
        return self._qmp("human-monitor-command", {"command-line": command})

    def send_key(self, key: str) -> None:
        """Press keys together, in QEMU's names: "ctrl-alt-delete"."""
        self._qmp("send-key", {"keys": [{"type": "qcode", "data": part} for part in key.split("-")]})

    def _qmp(self, command: str, arguments: dict, timeout: float = 600):
        """A QMP command; its failures as errors that name this machine."""
        self._require_up()
        if self.qmp is None:
            raise MachineError(self.name, "has no QMP connection (detached): attach it first")
        try:
            return self.qmp.execute(command, arguments, timeout)
        except QMPCommandError as exc:
            raise QMPError(self.name, f"QEMU refused {command}: {exc}") from exc
        except QMPConnectionError as exc:
            status = self._stop_process() if not self._alive() else None
            raise MachineDied(
                self.name, f"QMP {command} failed ({exc}); QEMU status {status}",
                console.excerpt(self.serial_log),
            ) from exc

    def snapshot(self, name: str) -> None:
        """Save the whole VM (memory, devices, disk) as `name` in its qcow2 disk."""
        self._require_up()
        self._hmp_snapshot(f"savevm {name}", "snapshot")
        self._transcript.note(f"snapshot {name}")

    def restore(self, name: str) -> None:
        """Go back to snapshot `name` and check the shell answers; heals an out-of-step backdoor."""
        self._require_up()
        assert self._backdoor is not None
        self._backdoor.discard_pending_output()
        self._hmp_snapshot(f"loadvm {name}", "restore")
        self._backdoor.discard_pending_output()
        self._serial_offset = self._serial_size()  # what the console said before is history
        self._transcript.note(f"restored {name}")
        try:
            self._backdoor.sync(timeout=60)
        except BackdoorEOF as exc:
            status = self._stop_process()
            raise MachineDied(
                self.name, f"QEMU exited (status {status}) right after restoring {name}",
                console.excerpt(self.serial_log),
            ) from exc
        except (BackdoorTimeout, BackdoorRebooted) as exc:
            raise MachineBroken(
                self.name, f"the backdoor did not answer after restoring {name} ({exc}); "
                "was the snapshot taken while a command ran? Reboot or restore another snapshot.",
                console.excerpt(self.serial_log),
            ) from exc

    def _hmp_snapshot(self, command: str, verb: str) -> None:
        assert self.qmp is not None
        try:
            text = self.qmp.hmp(command)
        except (QMPCommandError, QMPConnectionError) as exc:
            raise QMPError(self.name, f"{verb} failed: {exc}") from exc
        # HMP reports errors as text, not as a QMP error.
        if re.search(r"error|fail|not |doesn't|does not", text, re.IGNORECASE):
            raise QMPError(self.name, f"{verb} `{command}` failed: {text.strip()}")

    # -- helpers -------------------------------------------------------------------------

    def forwarded_port(self, guest_port: int) -> int:
        for forward in self.forwards:
            if forward.guest_port == guest_port:
                return forward.host_port
        raise KeyError(f"machine {self.name} forwards no guest port {guest_port}")

    def serial_tail(self, lines: int = 30) -> str:
        return console.tail(self.serial_log, lines)

    def wait_for_console_text(self, regex: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait for text matching `regex` on the serial console; returns the match. Only what
        the console printed since this machine's last start, restore or match counts."""
        pattern = re.compile(regex.encode())
        deadline = time.monotonic() + timeout
        while True:
            with open(self.serial_log, "rb") as log:
                log.seek(self._serial_offset)
                text = log.read()
            match = pattern.search(text)
            if match:
                self._serial_offset += match.end()
                return match.group(0).decode("utf-8", "replace")
            if time.monotonic() > deadline:
                raise MachineError(self.name, f"no console text matching {regex!r} within {timeout} s")
            time.sleep(0.1)

    def _serial_size(self) -> int:
        return self.serial_log.stat().st_size if self.serial_log.exists() else 0

    def note(self, text: str) -> None:
        """Write a marker into the transcript (the plugin marks each test's start)."""
        self._transcript.note(text)

    @property
    def testinfra(self):
        """A testinfra Host whose commands run over the backdoor."""
        if self._testinfra is None:
            from .testinfra_backend import host_for

            self._testinfra = host_for(self)
        return self._testinfra

    def _environment(self, console_fd: int) -> dict[str, str]:
        # A reattachable console's fd is a listening socket: QEMU serves it.
        serve = ",server=on,wait=off" if self.reattachable else ""
        options = [
            f"-qmp unix:{self.state_dir / 'qmp'},server=on,wait=off",
            f"-chardev socket,id=shell,fd={console_fd}{serve}",
            "-device virtio-serial",
            "-device virtconsole,chardev=shell",
            "-device virtio-rng-pci",
            "-serial stdio",
            "-display none",
            f"-accel {self.accel}",
        ]
        if not self.allow_reboot:
            options.append("-no-reboot")
        net = ["restrict=on"] + [
            f"hostfwd=tcp:127.0.0.1:{f.host_port}-:{f.guest_port}" for f in self.forwards
        ]
        env = dict(os.environ)
        env.update(
            {
                "TMPDIR": str(self.state_dir),
                "USE_TMPDIR": "1",
                "SHARED_DIR": str(self.shared_dir),
                "NIX_DISK_IMAGE": str(self.disk_image),
                "QEMU_OPTS": " ".join(options + [os.environ.get("QEMU_OPTS", "")]).strip(),
                "QEMU_NET_OPTS": ",".join(net),
            }
        )
        for number, socket_dir in self.vlans.items():
            env[f"QEMU_VDE_SOCKET_{number}"] = str(socket_dir)
        return env

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _require_up(self) -> None:
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


def _enlarge_send_buffer(sock: socket.socket, size: int = 16 << 20) -> None:
    """Best effort: SO_SNDBUFFORCE needs CAP_NET_ADMIN; SO_SNDBUF is capped by wmem_max."""
    for option in (32, socket.SO_SNDBUF):  # 32 = SO_SNDBUFFORCE (Linux)
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
