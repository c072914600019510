"""Faults give a clear error naming the machine and leave no process behind."""
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from harness.images import micro
from harness.vm import (
    CommandTimeout,
    Machine,
    MachineBroken,
    MachineDied,
    MachineError,
    MachineStartError,
)
from engine_fleets import PAIR, SOLO
from support import processes_mentioning, scratch_dir, vm_scratch_dir


@pytest.fixture
def state_dir():
    # Short, unique path: sockets live here, and leftovers are found by it.
    with vm_scratch_dir("fault") as path:
        yield path


@pytest.fixture(scope="module")
def image():
    return micro.ensure_micro_image()


def machine_with(state_dir, image, **kwargs) -> Machine:
    script = micro.write_start_script(state_dir, image, micro.MicroNode("fault", 1, ()))
    return Machine("fault", script, state_dir, **kwargs)


def test_start_script_that_exits_at_once(state_dir):
    script = state_dir / "run-broken-vm"
    script.write_text("#!/bin/sh\necho 'cannot start: no such disk' >&2\nexit 3\n")
    script.chmod(0o755)
    machine = Machine("broken", script, state_dir)
    with pytest.raises(MachineStartError) as err:
        machine.start()
    text = str(err.value)
    assert "machine broken" in text and "status 3" in text and "no such disk" in text
    assert not machine.booted


def test_missing_qemu_binary(state_dir, image):
    script = state_dir / "run-noqemu-vm"
    script.write_text(
        micro.start_script_text(image, micro.MicroNode("noqemu", 1, ()), qemu="qemu-system-nonexistent")
    )
    script.chmod(0o755)
    with pytest.raises(MachineStartError) as err:
        Machine("noqemu", script, state_dir).start()
    assert "status 127" in str(err.value) and "qemu-system-nonexistent" in str(err.value)


def test_corrupt_disk_image(state_dir, image):
    machine = machine_with(state_dir, image)
    machine.disk_image.write_bytes(b"QFI\xfb" + os.urandom(4096))  # qcow2 magic, garbage after
    with pytest.raises(MachineStartError) as err:
        machine.start()
    assert "fault.qcow2" in str(err.value)
    assert "QEMU exited" in str(err.value)


def test_guest_that_never_becomes_ready(state_dir, image, monkeypatch):
    # The initramfs runs `cat` as init: it waits on the console forever, no ready line.
    monkeypatch.setenv("QEMU_KERNEL_PARAMS", "rdinit=/bin/cat")
    machine = machine_with(state_dir, image, boot_timeout=15)
    started = time.monotonic()
    with pytest.raises(MachineStartError, match="did not become ready"):
        machine.start()
    assert time.monotonic() - started < 60
    assert not machine.booted


def test_guest_panic_during_boot(state_dir, image, monkeypatch):
    # init exits at once: the kernel panics, panic=1 reboots, -no-reboot makes QEMU exit.
    monkeypatch.setenv("QEMU_KERNEL_PARAMS", "rdinit=/bin/true")
    with pytest.raises(MachineStartError) as err:
        machine_with(state_dir, image).start()
    assert "Kernel panic" in str(err.value) or "Attempted to kill init" in str(err.value)
    # QEMU's own exit (a guest reset under -no-reboot ends it with 0), not our SIGKILL.
    assert "QEMU exited with status 0" in str(err.value)


@pytest.mark.fleet(SOLO)
def test_hung_command_times_out_and_restore_heals(fleet):
    solo = fleet["solo"]
    with pytest.raises(CommandTimeout, match="machine solo: command `sleep 600` did not finish within 1"):
        solo.execute("sleep 600", timeout=1)
    with pytest.raises(MachineBroken, match="still running"):
        solo.succeed("true")
    solo.restore("ndh-pristine")
    assert solo.succeed("echo back") == "back\n"


@pytest.mark.fleet(SOLO)
@pytest.mark.parametrize("signal_name, status", [("TERM", 143), ("INT", 130), ("KILL", 137)])
def test_a_command_that_ends_the_backdoor_shell_says_so_at_once(fleet, signal_name, status):
    # TERM and INT: the shell's traps say goodbye. KILL: no trap runs; its watcher says it.
    solo = fleet["solo"]
    started = time.monotonic()
    with pytest.raises(MachineBroken, match=rf"backdoor shell exited with status {status} \(SIG{signal_name}\) "
                                            rf"while running `kill -{signal_name} \$\$`"):
        solo.execute(f"kill -{signal_name} $$", timeout=300)
    assert time.monotonic() - started < 30  # not the command's timeout
    # No shell answers now: the next command waits for a rebooted guest's, then says so.
    with pytest.raises(MachineBroken, match=rf"cannot run `true`: the backdoor shell exited earlier \(status {status}\)"):
        solo.execute("true", timeout=2)
    solo.restore("ndh-pristine")
    assert solo.succeed("echo back") == "back\n"


@pytest.mark.fleet(SOLO)
def test_a_sigkilled_shell_is_noticed_while_its_command_and_a_daemon_it_started_run_on(fleet):
    # Neither holds the watcher's pipe open: the command's subshell and everything it starts
    # never get the shell's coproc fds. The output after the kill races the console's hangup
    # with the output pipe's `cat`, forked but maybe not yet exec'd (docs/backdoor.md); so a
    # few rounds.
    solo = fleet["solo"]
    for _ in range(3):
        solo.succeed("setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        with pytest.raises(MachineBroken, match=r"backdoor shell exited with status 137 \(SIGKILL\) while running "
                                                r"`kill -9 \$\$; echo after; sleep 600`"):
            solo.execute("kill -9 $$; echo after; sleep 600", timeout=120)
        solo.restore("ndh-pristine")
        assert solo.succeed("echo back") == "back\n"


@pytest.mark.fleet(SOLO)
@pytest.mark.parametrize("signal_name, alive", [("HUP", "gone"), ("TERM", "alive")])
def test_an_idle_shell_ends_at_once_on_sighup_but_waits_for_input_on_a_trapped_signal(fleet, signal_name, alive):
    # Why HUP stays untrapped: systemd stops the NixOS backdoor service with SIGHUP, and must
    # not wait for a next command (docs/backdoor.md). A watcher reports on the serial console.
    solo = fleet["solo"]
    solo.succeed(f"setsid sh -c 'sleep 1; kill -{signal_name} '$$'; sleep 1; "
                 f"if kill -0 '$$' 2>/dev/null; then echo ndh-shell-alive; else echo ndh-shell-gone; fi "
                 f">/dev/ttyS0' </dev/null >/dev/null 2>&1 &")
    solo.wait_for_console_text(f"ndh-shell-{alive}", timeout=60)
    solo.restore("ndh-pristine")
    assert solo.succeed("echo back") == "back\n"


@pytest.mark.fleet(SOLO)
def test_a_shell_signalled_between_commands_says_so_when_the_next_one_arrives(fleet):
    solo = fleet["solo"]
    solo.succeed("setsid sh -c 'sleep 1; kill -TERM '$$ </dev/null >/dev/null 2>&1 &")
    time.sleep(3)  # signalled meanwhile: idle bash runs the trap when it next reads input
    started = time.monotonic()
    with pytest.raises(MachineBroken, match=r"status 143 \(SIGTERM\) while running `echo one`: .* signalled before"):
        solo.execute("echo one", timeout=300)
    assert time.monotonic() - started < 30
    with pytest.raises(MachineBroken, match=r"cannot run `true`: the backdoor shell exited earlier \(status 143\), "
                                            r"and no rebooted guest's shell came within 5 s"):
        solo.execute("true", timeout=5)
    solo.restore("ndh-pristine")
    assert solo.succeed("echo back") == "back\n"


@pytest.mark.fleet(SOLO)
def test_commands_see_default_signal_dispositions(fleet):
    # The backdoor shell traps INT and TERM to report its exit; its commands must not inherit that.
    solo = fleet["solo"]
    assert solo.succeed("sh -c 'kill -TERM $$; echo survived' || echo status $?") == "status 143\n"
    ignored = int(solo.succeed("sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status"), 16)
    assert ignored & (1 << 1 | 1 << 14) == 0, f"INT or TERM ignored: {ignored:#x}"


@pytest.mark.fleet(PAIR)
def test_a_guest_that_reboots_after_a_command_answers_again(fleet):
    alpha = fleet["alpha"]
    boot_id = alpha.succeed("cat /proc/sys/kernel/random/boot_id")
    alpha.succeed("reboot")  # busybox returns before init stops the shell
    deadline = time.monotonic() + 300
    errors = []
    while True:
        assert time.monotonic() < deadline, f"no rebooted shell within 300 s; errors: {errors}"
        try:
            if alpha.succeed("cat /proc/sys/kernel/random/boot_id", timeout=300) != boot_id:
                break
            time.sleep(0.1)  # the reboot has not begun yet
        except MachineError as exc:
            errors.append(str(exc).splitlines()[0])
    # At most the command that met init stopping the shell fails, saying why: its goodbye (or,
    # had init's SIGKILL come first, the new ready line); later ones reach the rebooted guest.
    assert len(errors) <= 1, errors
    assert all("backdoor shell exited with status 143 (SIGTERM)" in error or "rebooted while running" in error
               for error in errors), errors


@pytest.mark.fleet(SOLO)
def test_timed_out_command_that_finishes_later_catches_up(fleet):
    solo = fleet["solo"]
    with pytest.raises(CommandTimeout):
        solo.execute("sleep 2; echo late", timeout=0.5)
    # Out of step while the command runs; in step again once it has finished.
    deadline = time.monotonic() + 60
    while True:
        try:
            assert solo.succeed("echo in step") == "in step\n"
            break
        except MachineBroken:
            assert time.monotonic() < deadline, "still out of step a minute after the command ended"
            time.sleep(0.5)


@pytest.mark.fleet(SOLO)
def test_qemu_killed_mid_command(fleet):
    solo = fleet["solo"]
    pid = solo.pid
    threading.Timer(1.0, os.kill, (pid, 9)).start()
    started = time.monotonic()
    with pytest.raises(MachineDied, match="QEMU exited .* while running `sleep 60`"):
        solo.execute("sleep 60", timeout=120)
    assert time.monotonic() - started < 30
    assert not solo.booted


@pytest.mark.fleet(SOLO)
def test_guest_panic_mid_command_without_reboot(fleet):
    solo = fleet["solo"]
    with pytest.raises(MachineDied) as err:
        solo.execute("echo c > /proc/sysrq-trigger; sleep 60", timeout=120)
    assert "sysrq" in str(err.value).lower() or "Kernel panic" in str(err.value)
    assert not solo.booted


@pytest.mark.fleet(PAIR)
def test_guest_panic_mid_command_with_reboot_allowed(fleet):
    alpha = fleet["alpha"]
    with pytest.raises(MachineDied, match="rebooted while running"):
        alpha.execute("echo c > /proc/sysrq-trigger; sleep 60", timeout=120)
    # The rebooted guest's backdoor is usable again.
    assert alpha.succeed("echo after panic") == "after panic\n"


FULL_DISK_CHILD = """
import os, subprocess
from harness.fleet import PRISTINE, Fleet, FleetSpec, NodeSpec
from harness.vm import MachineError
fleet = Fleet(FleetSpec("tiny", {"solo": NodeSpec(vlans=())}))
try:
    fleet.boot()
    stat = os.statvfs(os.environ["NDH_STATE_DIR"])
    free_mb = stat.f_bavail * stat.f_frsize // (1 << 20)
    subprocess.run(["dd", "if=/dev/zero", "of=" + os.environ["NDH_STATE_DIR"] + "/filler", "bs=1M",
                    "count=%d" % max(0, free_mb - 1)], capture_output=True)
    # The fleet's snapshot (pytest's pristine one), then one a test takes of its machine.
    for what, take in (("FLEET", lambda: fleet.snapshot(PRISTINE)), ("MACHINE", lambda: fleet["solo"].snapshot("mine"))):
        try:
            take()
            print("RESULT", what, "snapshot taken")
        except MachineError as exc:
            print("RESULT", what, type(exc).__name__, str(exc).replace(chr(10), " ").replace(chr(13), " "))
    print("COLD_BOOT", sorted(fleet.cold_boot))
finally:
    fleet.close()
"""


def test_a_full_disk_stops_the_snapshot_with_the_space_error(tmp_path):
    """A tiny filesystem (tmpfs in a mount namespace of its own) as the state directory: savevm
    cannot write, and that is an error that says so, not a switch to cold boots."""
    state = scratch_dir("tinyfs")
    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot make a mount namespace for a tiny filesystem: {probe.stderr.strip()}")
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=40m,mode=0700 tmpfs "$1" && exec "$2" "$3"',
             "sh", str(state), sys.executable, str(script)],
            env=dict(os.environ, NDH_STATE_DIR=str(state)), capture_output=True, text=True, timeout=300,
        )
    finally:
        leftovers = processes_mentioning(str(state))
        shutil.rmtree(state, ignore_errors=True)
    assert leftovers == []
    results = [line for line in done.stdout.split("\n") if line.startswith("RESULT")]
    assert [line.split()[1] for line in results] == ["FLEET", "MACHINE"], done.stdout + done.stderr
    for line in results:  # the engine's words for both, with the directory, not only QEMU's
        assert "QEMU could not write the snapshot into its disk" in line, line
        assert f"under {state}" in line and "Is that filesystem full?" in line, line
        assert "Is that filesystem full?" not in line.split("Is that filesystem full?", 1)[1], "said twice: " + line
    assert "COLD_BOOT []" in done.stdout, "a full disk must not switch nodes to cold boots"
