"""--vm-accel=tcg gives TCG for start scripts shaped like nixpkgs', through the accelerator
options the NixOS image asks for (harness/images/nixos.py explains the mechanism). Real QEMU, the real engine, the micro
image's kernel in a start script that picks its accelerator the two ways nixpkgs does."""
from __future__ import annotations

import shutil

import pytest

from harness.images import micro
from harness.images.nixos import NixosTestImage
from harness.vm import Machine, MachineStartError

# The two ways nixpkgs' start scripts choose an accelerator (nixos/lib/qemu-common.nix):
NIXPKGS_LAUNCHERS = {
    # older: qemu-kvm -cpu max, qemu-kvm being the qemu package's wrapper
    "qemu-kvm-wrapper": 'exec qemu-system-x86_64 $([ -e /dev/kvm ] && echo -enable-kvm) -cpu max "$@"',
    # newer: qemu-system-x86_64 -machine accel=kvm:tcg -cpu max
    "machine-accel": 'exec qemu-system-x86_64 -machine accel=kvm:tcg -cpu max "$@"',
}


@pytest.fixture(scope="module")
def image():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    return micro.ensure_micro_image()


def nixpkgs_shaped_script(tmp_path, image, launcher: str):
    qemu = tmp_path / "qemu-launcher"
    qemu.write_text(f"#!/bin/sh\n{NIXPKGS_LAUNCHERS[launcher]}\n")
    qemu.chmod(0o755)
    path = tmp_path / "nix-built" / "bin" / "run-probe-vm"
    path.parent.mkdir(parents=True)
    path.write_text(micro.start_script_text(image, micro.MicroNode("probe", 1), qemu=str(qemu)))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("launcher", sorted(NIXPKGS_LAUNCHERS))
def test_forced_tcg_boots_under_tcg_with_the_nixos_image_s_options(tmp_path, image, launcher):
    script = nixpkgs_shaped_script(tmp_path, image, launcher)
    options = NixosTestImage(flake="unused").accel_options("tcg")
    machine = Machine("probe", script, tmp_path / "state", accel="tcg", accel_options=options, boot_timeout=120)
    try:
        machine.start()
        assert machine.succeed("echo up") == "up\n"
        assert "kvm support: disabled" in machine.send_monitor_command("info kvm")
    finally:
        machine.close()


def test_with_the_engine_s_default_flag_qemu_refuses_a_nixpkgs_script(tmp_path, image):
    script = nixpkgs_shaped_script(tmp_path, image, "machine-accel")
    machine = Machine("probe", script, tmp_path / "state", accel="tcg", boot_timeout=60)
    try:
        with pytest.raises(MachineStartError) as failed:
            machine.start()
    finally:
        machine.close()
    assert 'The -accel and "-machine accel=" options are incompatible' in str(failed.value)
