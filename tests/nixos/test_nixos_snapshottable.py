"""test/fleet/nodes/snapshottable.nix (every NixOS test node snapshot-able: the store image
read-only, the UEFI variable store in qcow2), evaluated with nixpkgs' lib against the option
shapes of qemu-vm.nix; the start script it makes, built and run here from a script shaped like
qemu-vm.nix's with stand-ins for QEMU; and its helper test/fleet/efi-vars-qcow2.sh, run with the
host's qemu-img on the OVMF variable template."""
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


def test_the_uefi_variable_store_is_attached_as_qcow2():
    options = ok("cfg.qemu.options", useEFIBoot=True, useNixStoreImage=False)
    vars_lines = [o for o in options if "unit=1" in o]
    assert vars_lines == ["-drive if=pflash,format=qcow2,unit=1,readonly=off,file=$NIX_EFI_VARS"]
    # No command substitution in exec's arguments: its failure would go unseen (set -e).
    assert not any("$(" in o for o in options)
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


# --- the start script: the conversion before `exec`, built and run here ----------------------

def original_start_script(options: list[str], exec_lines: int = 1) -> str:
    """A start script shaped like qemu-vm.nix's startVM: `set -e`, $NIX_EFI_VARS made from the
    template when missing, and one `exec` of QEMU with the options."""
    start = "exec qemu-system-x86_64 \\\n    -name target \\\n    " + " \\\n    ".join(options) + ' \\\n    $QEMU_OPTS \\\n    "$@"\n'
    return (
        "#! /usr/bin/env bash\n\n"
        'export PATH="$NDH_TEST_BIN:$PATH"\n\n'
        "set -e\n\n"
        'NIX_EFI_VARS=$(readlink -f "${NIX_EFI_VARS:-target-efi-vars.fd}")\n'
        '# VM needs writable EFI vars\nif ! test -e "$NIX_EFI_VARS"; then\n'
        'cp "$NDH_TEST_TEMPLATE" "$NIX_EFI_VARS"\n  chmod 0644 "$NIX_EFI_VARS"\nfi\n\n'
        'cd "$TMPDIR"\n\n# Start QEMU.\n' + start * exec_lines
    )


def build_vm(tmp_path: Path, exec_lines: int = 1) -> subprocess.CompletedProcess[str]:
    """Builds system.build.vm as the module makes it, from an original VM in tmp_path/original:
    the derivation's build script, run with bash as Nix's runCommand runs it."""
    options = ok("cfg.qemu.options", useEFIBoot=True, useNixStoreImage=False)
    original = tmp_path / "original"
    (original / "bin").mkdir(parents=True)
    (original / "bin" / "run-target-vm").write_text(original_start_script(options, exec_lines))
    (original / "system").symlink_to("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-target")
    vm = ok("let vm = r.config.system.build.vm; in { inherit (vm) script; original = vm.withoutEfiVarsConversion.outPath; }",
            useEFIBoot=True, useNixStoreImage=False, vmOut=str(original))
    assert vm["original"] == str(original)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", vm["script"]], env={**os.environ, "out": str(tmp_path / "out")},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def start_script(tmp_path):
    """The built start script, with the helper's store path replaced by the checkout's helper,
    and a run of it with stand-ins on PATH: `qemu-system-x86_64` records its arguments."""
    require("bash")
    built = build_vm(tmp_path)
    assert built.returncode == 0, built.stderr
    script = tmp_path / "out" / "bin" / "run-target-vm"
    helper = tmp_path / "ndh-efi-vars-qcow2"
    helper.write_text("#!/usr/bin/env bash\n" + HELPER.read_text())
    helper.chmod(0o755)
    script.chmod(0o755)
    script.write_text(script.read_text().replace("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-ndh-efi-vars-qcow2", str(helper)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "qemu-argv"
    (bin_dir / "qemu-system-x86_64").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    (bin_dir / "qemu-system-x86_64").chmod(0o755)
    template = tmp_path / "OVMF_VARS.fd"
    template.write_bytes(b"\0" * 65536)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def run(qemu_img: str | None = None) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
        if qemu_img is not None:
            (bin_dir / "qemu-img").write_text("#!/bin/sh\n" + qemu_img)
            (bin_dir / "qemu-img").chmod(0o755)
        env = {**os.environ, "NDH_TEST_BIN": str(bin_dir), "NDH_TEST_TEMPLATE": str(template), "TMPDIR": str(run_dir)}
        proc = subprocess.run([str(script)], cwd=run_dir, env=env, capture_output=True, text=True, timeout=60)
        return proc, record, run_dir / "target-efi-vars.fd"

    return run


def test_the_start_script_converts_the_variable_store_before_exec(tmp_path, start_script):
    require("qemu-img")
    text = (tmp_path / "out" / "bin" / "run-target-vm").read_text()
    assert text.index("ndh-efi-vars-qcow2") < text.index("\nexec qemu-system-x86_64")
    assert (tmp_path / "out" / "system").is_symlink()
    proc, record, vars_file = start_script()
    assert proc.returncode == 0, proc.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vars_file)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert f"if=pflash,format=qcow2,unit=1,readonly=off,file={vars_file}" in record.read_text().splitlines()


def test_a_failing_conversion_stops_the_start_script_with_the_reason(start_script):
    failing = 'echo "qemu-img: $1: No space left on device (stand-in)" >&2\nexit 1\n'
    proc, record, vars_file = start_script(failing)
    assert proc.returncode == 1
    assert "qemu-img: convert: No space left on device (stand-in)" in proc.stderr
    assert (f'target: could not turn the UEFI variable store "{vars_file}" into qcow2 (the reason is above); '
            "QEMU was not started") in proc.stderr
    assert not record.exists(), "QEMU was started after the conversion failed"


@pytest.mark.parametrize("exec_lines", [0, 2])
def test_a_start_script_without_exactly_one_exec_fails_the_build_with_a_message(tmp_path, exec_lines):
    built = build_vm(tmp_path, exec_lines)
    assert built.returncode == 1
    assert "no longer has\nexactly one line starting with `exec`" in built.stderr
    assert not (tmp_path / "out").exists()


def test_without_uefi_the_vm_is_qemu_vm_s_own():
    vm = ok("let vm = r.config.system.build.vm; in { path = vm.outPath; wrapped = vm ? script; }",
            useEFIBoot=False, useNixStoreImage=False)
    assert vm == {"path": "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-vm", "wrapped": False}
