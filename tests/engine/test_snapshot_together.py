"""Snapshots of whole fleets: every node paused, saved or loaded in parallel and resumed
together; UEFI nodes whose variable store is qcow2 snapshot like any other; a read-only raw
drive (how the harness's NixOS nodes get their store image) does not block `savevm`; and boots
wait for start scripts that work a long time before they exec QEMU."""
import time
from pathlib import Path

import pytest

from harness.fleet import PRISTINE, Fleet, FleetSpec, NodeSpec
from harness.images import micro
from harness.vm import Machine, QMPError, start_all
from harness.vm.monitor import saved_memory
from support import vm_scratch_dir

# A GUID of our own: the variable is ours alone, whatever the firmware keeps.
EFI_VARIABLE = "NdhProbe-3c2d7a4e-5f1b-4c6e-9a8d-1b2c3d4e5f60"
EFIVARS = "/sys/firmware/efi/efivars"

UEFI_SOLO = FleetSpec(
    "uefi-solo", {"efi": NodeSpec(vlans=(), memory_mb=256, allow_reboot=True)}, image=micro.MICRO_UEFI
)
QUAD = FleetSpec("quad", {name: NodeSpec(vlans=(1,)) for name in ("n1", "n2", "n3", "n4")})


@pytest.fixture
def state_dir():
    with vm_scratch_dir("snap") as path:
        yield path


@pytest.fixture(scope="module")
def image():
    return micro.ensure_micro_image()


@pytest.mark.fleet(UEFI_SOLO)
def test_a_uefi_node_with_qcow2_variables_snapshots_and_restores_them(fleet):
    node = fleet["efi"]
    assert fleet.snapshots_supported, f"QEMU refused the pristine snapshot: {fleet.cold_boot}"
    node.succeed(f"grep -q ' {EFIVARS} efivarfs ' /proc/mounts", f"ls {EFIVARS} | grep -q .")  # booted through OVMF
    # Attributes NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS, then the value.
    node.succeed(f"printf '\\007\\000\\000\\000written-after-the-snapshot' > {EFIVARS}/{EFI_VARIABLE}")
    node.reboot()
    # Control: the variable reached the flash (the qcow2 variable store) and outlives a reboot.
    assert "written-after-the-snapshot" in node.succeed(f"cat {EFIVARS}/{EFI_VARIABLE}")
    fleet.restore(PRISTINE)
    node.fail(f"test -e {EFIVARS}/{EFI_VARIABLE}")
    # A reboot after a restore boots, and the firmware reads the flash as the snapshot had it.
    node.reboot()
    node.fail(f"test -e {EFIVARS}/{EFI_VARIABLE}")


@pytest.mark.fleet(UEFI_SOLO)
def test_a_uefi_node_saves_snapshot_memory_to_the_drive_the_engine_tunes(fleet):
    # As in qemu-vm.nix, the disk comes before the pflash drives, so QEMU puts the memory on it;
    # the image names it, and the engine gives it its faster I/O (harness/vm/disk_aio.py).
    node = fleet["efi"]
    assert micro.MICRO_UEFI.snapshot_drive == "disk0"
    (variables,) = node.state_dir.glob("*-efi-vars.fd")
    assert saved_memory(node.disk_image)[PRISTINE] > 10 << 20
    assert saved_memory(variables)[PRISTINE] == 0


def _with_store_drive(state_dir: Path, image, *, readonly: bool) -> Machine:
    """A micro node with an extra raw drive attached as qemu-vm.nix attaches its Nix store
    image (`-drive index=2,id=drive2,if=none,file=<store.img>,format=raw` + virtio-blk), plus
    `readonly=on` when asked."""
    store = state_dir / "store.img"
    with open(store, "wb") as handle:
        handle.truncate(8 << 20)
    script = micro.write_start_script(state_dir, image, micro.MicroNode("store", 1, ()))
    wrapper = state_dir / "run-store-vm"
    extra = ",readonly=on" if readonly else ""
    wrapper.write_text(
        f"#!/bin/sh\nexec {script} -drive index=2,id=drive2,if=none,file={store},format=raw{extra} "
        '-device virtio-blk-pci,bootindex=2,drive=drive2 "$@"\n'
    )
    wrapper.chmod(0o755)
    return Machine("store", wrapper, state_dir / "vm")


def test_a_read_only_raw_store_drive_does_not_block_snapshots(state_dir, image):
    machine = _with_store_drive(state_dir, image, readonly=True)
    try:
        machine.start()
        assert machine.succeed("cat /sys/block/vdb/ro") == "1\n"
        machine.snapshot("s")
        machine.succeed("echo after > /persist/after")
        machine.restore("s")
        machine.fail("test -e /persist/after")
    finally:
        machine.close()


def test_the_same_drive_writable_is_refused_as_qemu_vm_nix_attaches_it(state_dir, image):
    machine = _with_store_drive(state_dir, image, readonly=False)
    try:
        machine.start()
        with pytest.raises(QMPError, match="does not support snapshots"):
            machine.snapshot("s")
    finally:
        machine.close()


def test_boots_wait_for_start_scripts_that_work_long_before_qemu(state_dir, image):
    """Four start scripts that work 45 s before they exec QEMU (as a NixOS start script builds
    its store image), started together: QMP and the ready line wait up to the boot timeout."""
    machines = []
    for number in range(1, 5):
        name = f"slow{number}"
        script = micro.write_start_script(state_dir / name, image, micro.MicroNode(name, number, ()))
        wrapper = state_dir / name / "run-slow-vm"
        wrapper.write_text(f"#!/bin/sh\nsleep 45\nexec {script} \"$@\"\n")
        wrapper.chmod(0o755)
        machines.append(Machine(name, wrapper, state_dir / name, boot_timeout=240))
    started = time.monotonic()
    try:
        start_all(*machines)
        assert time.monotonic() - started >= 45
        for machine in machines:
            assert machine.succeed("hostname") == f"{machine.name}\n"
    finally:
        for machine in machines:
            machine.close()


def test_a_fleet_restores_all_nodes_at_one_moment(state_dir):
    fleet = Fleet(QUAD, base_dir=state_dir / "quad")
    try:
        fleet.boot()
        fleet.snapshot("clean")
        for machine in fleet:
            machine.succeed(f"echo {machine.name} > /persist/mark; echo x > /tmp/mark")
        fleet["n3"].crash()  # a stopped node: restore() names it, reset() restarts it
        with pytest.raises(Exception, match="n3"):
            fleet.restore("clean")
        fleet["n3"].start()
        fleet.restore("clean")
        for machine in fleet:
            machine.fail("test -e /persist/mark", "test -e /tmp/mark")
            assert machine.qmp.execute("query-status")["status"] == "running"
        # The nodes still reach each other: the VLAN went on after the common moment.
        fleet["n1"].succeed("ping -c 1 -W 5 n4")
    finally:
        fleet.close()
