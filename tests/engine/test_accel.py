"""--vm-accel: forced choices, bad input, and the cached per-host verdict of `auto`."""
import json
import os

import pytest

from harness import accel


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


def test_a_failed_probe_that_never_ran_a_guest_is_not_cached(tmp_path, monkeypatch):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no accessible /dev/kvm here: `auto` answers without probing or caching")
    monkeypatch.setenv("NDH_CACHE_DIR", str(tmp_path))

    def no_image(*args, **kwargs):
        raise RuntimeError("apt-get download failed (offline)")

    monkeypatch.setattr("harness.images.micro.ensure_micro_image", no_image)
    choice = accel.resolve("auto")
    assert choice.name == "tcg" and "KVM not probed" in choice.reason and "offline" in choice.reason
    assert not list(tmp_path.glob("accel-*.json")), "a probe that never ran must not be cached"
