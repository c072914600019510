"""The micro image from elsewhere (`$NDH_MICRO_IMAGE`, what the flake's Nix recipe builds):
the layout is checked, guest scripts must equal this checkout's, and a fleet boots from it with
Debian's package tools gone from PATH. The Nix build itself cannot run here (no nixpkgs): the
Debian-built image, copied into the same layout, stands in for its output."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.images import micro


@pytest.fixture(scope="module")
def debian_image() -> micro.MicroImage:
    if os.environ.get(micro.PREBUILT_ENV):
        pytest.skip(f"{micro.PREBUILT_ENV} is set: this test copies the Debian-built image")
    try:
        return micro.ensure_micro_image()
    except micro.MicroImageError as exc:  # not a Debian host: its message names the tool and what to do
        pytest.skip(f"no Debian-built micro image to copy here: {exc}")


def prebuilt_copy(image: micro.MicroImage, target: Path) -> Path:
    """The layout nix/micro-image.nix writes: vmlinuz, initrd, disk-base.qcow2, manifest.json,
    guest/ (the guest scripts it was built from)."""
    target.mkdir()
    for name in ("vmlinuz", "initrd", "disk-base.qcow2"):
        shutil.copy(image.directory / name, target / name)
    (target / "manifest.json").write_text('{"inputs": {"recipe": "nix"}, "bios": null}')
    shutil.copytree(micro.GUEST_FILES, target / "guest")
    return target


def test_a_prebuilt_image_is_used_as_it_is(debian_image, tmp_path, monkeypatch):
    prebuilt = prebuilt_copy(debian_image, tmp_path / "image")
    monkeypatch.setenv(micro.PREBUILT_ENV, str(prebuilt))
    loaded = micro.ensure_micro_image()
    assert (loaded.directory, loaded.kernel, loaded.bios, dict(loaded.inputs)) == (
        prebuilt, prebuilt / "vmlinuz", None, {"recipe": "nix"})


def test_a_prebuilt_image_from_other_guest_scripts_is_refused(debian_image, tmp_path, monkeypatch):
    prebuilt = prebuilt_copy(debian_image, tmp_path / "image")
    (prebuilt / "guest" / "backdoor").write_text("#!/bin/sh\n# an older backdoor\n")
    monkeypatch.setenv(micro.PREBUILT_ENV, str(prebuilt))
    with pytest.raises(micro.MicroImageError, match=r"was built from other guest scripts than .* \(backdoor differ\)"):
        micro.ensure_micro_image()


def test_a_directory_that_is_not_an_image_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(micro.PREBUILT_ENV, str(tmp_path))
    with pytest.raises(micro.MicroImageError) as caught:
        micro.ensure_micro_image()
    assert str(caught.value).startswith(
        f"{micro.PREBUILT_ENV}={tmp_path} is not a micro image (no vmlinuz, initrd, disk-base.qcow2, "
        "manifest.json): use the Nix-built image")


def test_without_debian_tools_or_a_prebuilt_image_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(micro.PREBUILT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-cache, apt-get, dpkg-deb, dpkg-query
    with pytest.raises(micro.MicroImageError) as caught:
        micro.ensure_micro_image()
    assert str(caught.value) == (
        "no micro image: NDH_MICRO_IMAGE is not set and the Debian recipe needs apt-cache, apt-get, "
        f"dpkg-deb, dpkg-query (not on PATH): {micro.HOW_TO_GET_ONE}")


def test_a_fleet_boots_from_a_prebuilt_image_without_debian_tools(debian_image, tmp_path, monkeypatch):
    prebuilt = prebuilt_copy(debian_image, tmp_path / "image")
    monkeypatch.setenv(micro.PREBUILT_ENV, str(prebuilt))
    bin_dir = tmp_path / "bin"  # qemu and qemu-img only: no Debian package tool
    bin_dir.mkdir()
    for tool in ("qemu-system-x86_64", "qemu-img", "vde_switch", "bash", "readlink", "mktemp", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    fleet = Fleet(FleetSpec("prebuilt", {"solo": NodeSpec(vlans=())}), accel="tcg")
    try:
        fleet.boot()
        assert fleet["solo"].succeed("hostname").strip() == "solo"
        script = (fleet.state_dir / "solo" / "bin" / "run-solo-vm").read_text()
        assert str(prebuilt / "vmlinuz") in script and str(prebuilt / "disk-base.qcow2") in script
    finally:
        fleet.close()
