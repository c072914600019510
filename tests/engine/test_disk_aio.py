"""How QEMU reads the drive that holds snapshots (harness/vm/disk_aio.py): io_uring where QEMU
can open a drive with it, QEMU's default where it cannot (proven in a child process whose
seccomp filter forbids io_uring, as Docker's default profile does), or what NDH_DISK_AIO says;
and the drive a micro node's snapshots land on is the one the engine tunes."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.images import micro
from harness.vm import Machine, MachineStartError, disk_aio
from support import require, vm_scratch_dir

REPO = Path(__file__).resolve().parents[2]

# A child process: optionally without io_uring, it reports the choice, then boots a micro
# node with its snapshot drive named, restores a snapshot, and reports the node's io_uring fds.
CHILD = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    if sys.argv[2] == "forbid":
        from support.no_io_uring import forbid_io_uring
        forbid_io_uring()
    from harness.images import micro
    from harness.vm import Machine, disk_aio
    aio = disk_aio.choice()
    state = Path(sys.argv[1])
    script = micro.write_start_script(state, micro.ensure_micro_image(), micro.MicroNode("aio", 1, ()))
    machine = Machine("aio", script, state / "vm", snapshot_drive=micro.MICRO.snapshot_drive)
    try:
        machine.start()
        machine.snapshot("s")
        machine.succeed("echo after > /persist/after")
        machine.restore("s")
        machine.fail("test -e /persist/after")
        fds = [os.readlink(f"/proc/{machine.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{machine.pid}/fd")]
        print(json.dumps({"aio": aio.name, "reason": aio.reason, "io_uring_fds": fds.count("anon_inode:[io_uring]")}))
    finally:
        machine.close()
""")


def run_child(tmp: Path, mode: str, **env: str) -> dict:
    require("qemu-system-x86_64", "qemu-img")
    if micro.missing_reason():
        pytest.skip(micro.missing_reason())
    environment = {k: v for k, v in os.environ.items() if k != disk_aio.ENV}
    environment.update(env, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp), mode], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def tmp():
    with vm_scratch_dir("aio") as path:
        yield path


def test_without_io_uring_qemu_keeps_its_default_and_says_why(tmp):
    report = run_child(tmp, "forbid")
    assert report["aio"] == "threads"
    assert "io_uring unusable here" in report["reason"] and "io_uring" in report["reason"].split("(", 1)[1]
    assert report["io_uring_fds"] == 0  # none can exist; the node booted, snapshotted and restored all the same


def test_where_qemu_can_use_io_uring_the_snapshot_drive_gets_it(tmp):
    failure = disk_aio.io_uring_failure("qemu-system-x86_64")
    if failure is not None:
        pytest.skip(f"this host's QEMU cannot use io_uring: {failure}")
    report = run_child(tmp / "uring", "allow")
    assert report["aio"] == "io_uring"
    # Compared with the same QEMU on QEMU's default: a QEMU may use io_uring for more than drives.
    default = run_child(tmp / "threads", "allow", NDH_DISK_AIO="threads")
    assert report["io_uring_fds"] > default["io_uring_fds"], (report, default)


def test_ndh_disk_aio_decides_without_asking_qemu(tmp):
    report = run_child(tmp, "allow", NDH_DISK_AIO="threads")
    assert (report["aio"], report["reason"]) == ("threads", "forced by NDH_DISK_AIO=threads")


def test_a_wrong_ndh_disk_aio_is_an_error(monkeypatch):
    monkeypatch.setenv(disk_aio.ENV, "native")
    disk_aio.choice.cache_clear()
    try:
        with pytest.raises(ValueError, match="NDH_DISK_AIO must be one of io_uring, threads, not 'native'"):
            disk_aio.choice()
    finally:
        disk_aio.choice.cache_clear()


def test_a_missing_qemu_is_a_reason_not_a_crash():
    assert disk_aio.io_uring_failure("/nonexistent/qemu-system-x86_64") == "/nonexistent/qemu-system-x86_64 is not on PATH"


def test_an_image_without_a_named_drive_gets_no_option():
    assert disk_aio.drive_options(None) == ()


def test_a_start_script_without_the_named_drive_fails_with_a_way_out(tmp, monkeypatch):
    # As a prebuilt start script that is not qemu-vm.nix's would (no drive1).
    require("qemu-system-x86_64", "qemu-img")
    if micro.missing_reason():
        pytest.skip(micro.missing_reason())
    monkeypatch.setenv(disk_aio.ENV, "io_uring")
    disk_aio.choice.cache_clear()
    script = micro.write_start_script(tmp, micro.ensure_micro_image(), micro.MicroNode("nodrive", 1, ()))
    machine = Machine("nodrive", script, tmp / "vm", snapshot_drive="drive1", boot_timeout=60)
    try:
        with pytest.raises(MachineStartError) as failure:
            machine.start()
    finally:
        machine.close()
        disk_aio.choice.cache_clear()
    assert 'there is no drive "drive1" defined' in str(failure.value)
    assert "NDH_DISK_AIO=threads starts it without the option" in str(failure.value)


def test_micro_guests_zero_freed_pages_so_snapshots_skip_them():
    assert "init_on_free=1" in micro.kernel_params(micro.MicroNode("n", 1, ())).split()


FORCED_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from support.no_io_uring import forbid_io_uring
    forbid_io_uring()
    from harness.images import micro
    from harness.vm import Machine, MachineStartError
    state = Path(sys.argv[1])
    script = micro.write_start_script(state, micro.ensure_micro_image(), micro.MicroNode("forced", 1, ()))
    machine = Machine("forced", script, state / "vm", snapshot_drive="disk0", boot_timeout=60)
    try:
        machine.start()
    except MachineStartError as exc:
        print(exc)
    finally:
        machine.close()
""")


def test_io_uring_forced_where_qemu_cannot_use_it_fails_with_the_way_out(tmp):
    require("qemu-system-x86_64", "qemu-img")
    if micro.missing_reason():
        pytest.skip(micro.missing_reason())
    env = dict(os.environ, NDH_DISK_AIO="io_uring", PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    proc = subprocess.run([sys.executable, "-c", FORCED_CHILD, str(tmp)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Unable to use io_uring" in proc.stdout, proc.stdout
    assert "NDH_DISK_AIO=threads starts it without" in proc.stdout, proc.stdout
