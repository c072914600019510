"""test/fleet/nodes/snapshottable.nix (every NixOS test node snapshot-able: the store image
read-only, the UEFI variable store in qcow2), evaluated with nixpkgs' lib against the option
shapes of qemu-vm.nix; and its helper test/fleet/efi-vars-qcow2.sh, run with the host's
qemu-img on the OVMF variable template."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from nixos_testlib import REPO
from support import require

HERE = Path(__file__).resolve().parent
HELPER = REPO / "test" / "fleet" / "efi-vars-qcow2.sh"
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def p(path: Path) -> str:
    return f"(/. + {json.dumps(str(path))})"


def evaluate(select: str, **stub_args):
    lib = os.environ.get("NIXPKGS_LIB")
    if not lib:
        pytest.skip("NIXPKGS_LIB is not set: point it at a nixpkgs lib directory to evaluate the NixOS modules")
    require("nix-instantiate")
    args = " ".join(f"{key} = {json.dumps(value)};" for key, value in stub_args.items())
    expr = (
        f"let lib = import {p(Path(lib))}; "
        f"r = lib.evalModules {{ modules = [ (import {p(HERE / 'snapshottable-stub.nix')} {{ inherit lib; {args} }}) "
        f"{p(REPO / 'test' / 'fleet' / 'nodes' / 'snapshottable.nix')} ]; }}; "
        f"cfg = r.config.virtualisation; in {select}"
    )
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=120,
    )
    return result


def ok(select: str, **stub_args):
    result = evaluate(select, **stub_args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_store_image_drive_is_attached_read_only_and_nothing_else_changes():
    drives = ok("cfg.qemu.drives", useEFIBoot=False, useNixStoreImage=True)
    by_name = {d["name"]: d for d in drives}
    assert by_name["nix-store"]["driveExtraOpts"] == {"format": "raw", "readonly": "on"}
    assert by_name["root"]["driveExtraOpts"] == {"cache": "writeback"}


def test_the_uefi_variable_store_is_attached_as_qcow2_through_the_helper():
    options = ok("cfg.qemu.options", useEFIBoot=True, useNixStoreImage=False)
    vars_lines = [o for o in options if "unit=1" in o]
    assert len(vars_lines) == 1
    line = vars_lines[0]
    assert line.startswith("-drive if=pflash,format=qcow2,unit=1,readonly=off,file=\"$(")
    assert "ndh-efi-vars-qcow2" in line and line.endswith(' "$NIX_EFI_VARS")"')
    assert "format=raw" not in line
    # The firmware itself stays raw and read-only (QEMU skips read-only drives).
    assert any(o.startswith("-drive if=pflash,format=raw,unit=0,readonly=on") for o in options)
    assert "-usb" in options


def test_the_root_disk_must_come_first_since_the_harness_tunes_drive1():
    assert [d["name"] for d in ok("cfg.qemu.drives", useEFIBoot=False, useNixStoreImage=True)] == ["root", "nix-store"]
    result = evaluate("cfg.qemu.drives", useEFIBoot=False, useNixStoreImage=True, storeFirst=True)
    assert result.returncode != 0
    assert "no longer attaches the root disk as its first drive (drive1)" in result.stderr
    assert "A node without a root disk (virtualisation.diskImage = null) cannot be snapshotted" in result.stderr


def test_freed_guest_memory_is_zeroed_so_snapshots_skip_it():
    result = evaluate("r.config.boot.kernelParams", useEFIBoot=False, useNixStoreImage=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["init_on_free=1"]


def test_a_changed_qemu_vm_nix_fails_the_build_with_a_message():
    result = evaluate("cfg.qemu.options", useEFIBoot=True, useNixStoreImage=False,
                      efiLine="-drive if=pflash,format=raw,unit=1,file=/some/other/vars.fd")
    assert result.returncode != 0
    assert "no longer attaches the UEFI variable store" in result.stderr
    assert "snapshottable.nix" in result.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_helper_turns_the_raw_variable_store_into_qcow2_once(tmp_path):
    require("qemu-img")
    if not OVMF_VARS.exists():
        pytest.skip(f"{OVMF_VARS} is missing: install Debian's ovmf package (ci/bootstrap does)")
    vars_file = tmp_path / "target-efi-vars.fd"
    shutil.copy(OVMF_VARS, vars_file)
    run = lambda: subprocess.run(["bash", str(HELPER), str(vars_file)], capture_output=True, text=True, check=True)  # noqa: E731
    assert run().stdout == f"{vars_file}\n"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vars_file)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == OVMF_VARS.stat().st_size, "pflash needs the template's exact size"
    converted = _sha(vars_file)
    assert run().stdout == f"{vars_file}\n"
    assert _sha(vars_file) == converted, "a store that is qcow2 already is left alone"
    assert list(tmp_path.iterdir()) == [vars_file]
