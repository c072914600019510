"""Where fleet state goes by default (a disk, not a tmpfs; short enough for unix sockets), and
that a machine's own waits (QMP, power off) stretch with its time scale."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness import state_dirs
from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.vm import Machine, MachineStartError


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("NDH_STATE_DIR", "NDH_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="ndh-sd-", dir="/tmp"))  # tmp_path is too long here
    yield path
    shutil.rmtree(path)


def test_by_default_state_goes_under_the_user_s_cache_directory(clean_env, short_dir):
    clean_env.setenv("XDG_CACHE_HOME", str(short_dir))
    expected = str(short_dir / "nixos-deploy-harness" / "vm-state")
    assert state_dirs.state_root() == expected
    assert state_dirs.describe_root() == (
        f"{expected} (the user's cache directory; set $NDH_STATE_DIR to a short directory on a "
        "disk with room to move it)")
    made = state_dirs.make("pair")
    assert made.parent == Path(expected) and (made / state_dirs.OWNER_FILE).exists()
    assert Path(expected).stat().st_mode & 0o777 == 0o700


def test_a_cache_directory_too_long_for_sockets_falls_back_to_var_tmp_and_says_so(clean_env, tmp_path):
    long_cache = tmp_path / ("x" * 60)
    clean_env.setenv("NDH_CACHE_DIR", str(long_cache))
    # /var/tmp is everybody's: the state root is a directory of this user's in it.
    fallback = f"/var/tmp/ndh-{os.getuid()}"
    assert state_dirs.state_root() == fallback
    assert state_dirs.describe_root().startswith(
        f"{fallback} ({long_cache}/vm-state is too long for QEMU's unix sockets (over 50 bytes), so {fallback};")


def test_ndh_state_dir_overrides_the_default(clean_env, tmp_path):
    clean_env.setenv("NDH_STATE_DIR", str(tmp_path))
    assert state_dirs.state_root() == str(tmp_path)
    assert state_dirs.describe_root() == f"{tmp_path} (from $NDH_STATE_DIR)"


def test_the_longest_socket_path_fits_under_a_root_of_the_maximum_length():
    root = "/" + "r" * (state_dirs.ROOT_MAX - 1)
    state_dir = f"{root}/{state_dirs.PREFIX}{'n' * 12}-abcdefgh"
    for socket in (f"{state_dir}/{'node' * 5}/shell", f"{state_dir}/{'node' * 5}/qmp",
                   f"{state_dir}/vde1.ctl/.12345-00000", f"{state_dir}/vde1.ctl/ctl"):
        assert len(socket.encode()) < 108, socket


SPEC_FOR_SCALE = FleetSpec("scaled", {"node": NodeSpec(vlans=())})


def test_the_qmp_wait_is_the_boot_timeout_which_the_fleet_scales(tmp_path):
    """QMP and the ready line share one deadline from launch, the boot timeout (a NixOS start
    script may work a long time before it execs QEMU); a fleet scales it by its time scale."""
    script = tmp_path / "run-slow-vm"
    script.write_text("#!/bin/sh\nexec sleep 30\n")  # alive, but never opens QMP
    script.chmod(0o755)
    machine = Machine("slow", script, tmp_path / "state", boot_timeout=3)
    started = time.monotonic()
    with pytest.raises(MachineStartError, match=r"no QMP socket at .* after [0-9.]+ s"):
        machine.start()
    assert time.monotonic() - started < 15
    machine.close()
    assert Fleet(SPEC_FOR_SCALE, time_scale=5, base_dir=tmp_path / "fleet").boot_timeout == 1500
