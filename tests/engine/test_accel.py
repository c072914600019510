"""--vm-accel: forced choices, bad input, and the cached per-host verdict of `auto`."""
import json
import os

import pytest

from harness import accel
from harness.vm import bare_boot


@pytest.mark.parametrize("name", ["kvm", "tcg"])
def test_forced_choices_are_taken_as_given(name):
    choice = accel.resolve(name)
    assert (choice.name, choice.reason) == (name, f"forced by --vm-accel={name}")


def test_an_unknown_choice_is_an_error():
    with pytest.raises(ValueError, match="auto, kvm or tcg"):
        accel.resolve("hvf")


def test_auto_reuses_the_cached_verdict(tmp_path, monkeypatch):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no accessible /dev/kvm here: `auto` answers without probing or caching")
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path))
    cached = tmp_path / f"accel-{accel._host_key()}.json"
    cached.write_text(json.dumps({"name": "tcg", "reason": "auto: written by this test"}))
    choice = accel.resolve("auto")
    assert choice == accel.AccelChoice("tcg", "auto: written by this test (cached verdict)")


def test_without_a_micro_image_the_boot_sector_gives_the_verdict(tmp_path, monkeypatch):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no accessible /dev/kvm here: `auto` answers without probing or caching")
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path))

    def no_image(*args, **kwargs):
        raise RuntimeError("apt-get download failed (offline)")

    monkeypatch.setattr("harness.images.micro.ensure_micro_image", no_image)
    choice = accel.resolve("auto")
    if choice.name == "kvm":
        assert choice.reason == ("auto: a KVM guest ran (boot sector under QEMU's BIOS, -cpu max; micro "
                                 "image not tried: apt-get download failed (offline))")
    else:  # this host's KVM does not run guest code (the micro image is never reached)
        assert choice.reason.startswith("auto: /dev/kvm exists but a KVM guest (a boot sector under QEMU's BIOS")
    assert list(tmp_path.glob("accel-*.json")), "a verdict from a guest that ran is cached"


def test_a_micro_probe_that_could_not_run_is_not_cached(tmp_path, monkeypatch):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no accessible /dev/kvm here: `auto` answers without probing or caching")
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(accel, "_probe", lambda: (accel.AccelChoice("tcg", "auto: could not run"), False))
    assert accel.resolve("auto") == accel.AccelChoice("tcg", "auto: could not run")
    assert not list(tmp_path.glob("accel-*.json")), "a probe that never ran a guest must not be cached"


# -- the boot sector: guest code without any image ----------------------------------------

def test_the_boot_sector_runs_under_tcg_and_exits_through_the_debug_port():
    result = bare_boot.bare_boot("tcg", 60)
    assert result == bare_boot.BareBootResult(
        True, "ran a boot sector under tcg (BIOS, then our code, exit via isa-debug-exit)")


def test_the_boot_sector_is_one_valid_sector():
    sector = bare_boot.boot_sector()
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    assert bare_boot.MARKER in sector


def test_a_qemu_that_fails_is_reported_with_its_status_and_message(tmp_path):
    qemu = tmp_path / "qemu"
    qemu.write_text("#!/bin/sh\necho 'qemu: could not load PC BIOS' >&2\nexit 1\n")
    qemu.chmod(0o755)
    result = bare_boot.bare_boot("kvm", 10, qemu=str(qemu))
    assert result == bare_boot.BareBootResult(False, "failed: QEMU exited with status 1 (qemu: could not load PC BIOS)")


def test_a_guest_that_never_exits_is_reported_as_hung(tmp_path):
    qemu = tmp_path / "qemu"
    qemu.write_text("#!/bin/sh\nexec sleep 60\n")
    qemu.chmod(0o755)
    result = bare_boot.bare_boot("kvm", 1, qemu=str(qemu))
    assert result == bare_boot.BareBootResult(False, "hung: no exit from the boot sector within 1 s")


def test_a_boot_sector_that_fails_under_tcg_too_decides_nothing(tmp_path, monkeypatch):
    """QEMU unable to run any guest (a missing BIOS file, say) says nothing about KVM."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no accessible /dev/kvm here: `auto` answers without probing or caching")
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path))
    broken = bare_boot.BareBootResult(False, "failed: QEMU exited with status 1 (could not load PC BIOS)")
    monkeypatch.setattr(bare_boot, "bare_boot", lambda accel, timeout: broken)
    choice = accel.resolve("auto")
    assert choice == accel.AccelChoice("tcg", "auto: KVM not decided: the probe's boot sector does not run under "
                                              "TCG either (failed: QEMU exited with status 1 (could not load PC "
                                              "BIOS)); using TCG")
    assert not list(tmp_path.glob("accel-*.json"))
