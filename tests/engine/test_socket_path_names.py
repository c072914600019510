"""A node name that host names allow (up to 63 characters) can still make a node's unix sockets
too long for the state directory it gets: the fleet says so, naming the node and the limit,
before QEMU would fail with "Failed to connect", and leaves no state directory behind."""
import os
import shutil
import tempfile

import pytest

from harness import state_dirs
from harness.fleet import Fleet, FleetSpec, NodeSpec


@pytest.fixture
def short_root(monkeypatch):
    """A state root short enough for sockets wherever pytest's tmp_path is (it can be long)."""
    root = tempfile.mkdtemp(prefix="sp-")
    monkeypatch.setenv("NDH_STATE_DIR", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_node_name_too_long_for_its_sockets_is_refused_naming_the_limit(short_root, monkeypatch):
    # A root as long as the default one may be (state_dirs.ROOT_MAX bytes).
    root = os.path.join(short_root, "r" * (state_dirs.ROOT_MAX - len(short_root) - 1))
    os.mkdir(root, 0o700)
    monkeypatch.setenv("NDH_STATE_DIR", root)
    long_name = "n" * 63
    with pytest.raises(ValueError) as refused:
        Fleet(FleetSpec("long", {long_name: NodeSpec(vlans=())}))
    message = str(refused.value)
    assert repr(long_name) in message and "107" in message and "NDH_STATE_DIR" in message
    assert os.listdir(root) == []


def test_a_node_name_that_fits_is_accepted(short_root):
    fleet = Fleet(FleetSpec("short", {"alpha": NodeSpec(vlans=())}))
    try:
        assert str(fleet.state_dir.parent) == short_root
    finally:
        fleet.close()
