"""Sixteen VM tests shaped like deploy checks: guest CPU work (a checksum of random data, as a
closure copy or an activation costs), a write to the persistent disk, a snapshot restore. Two
fleets of eight tests: with `-n 2` each runs in its own worker (one fleet per run: the tests of
one fleet share a worker)."""
import pytest

from harness.fleet import FleetSpec, NodeSpec

SUITES = [FleetSpec(f"bench-suite-{half}", {"node": NodeSpec(vlans=())}) for half in ("a", "b")]


@pytest.mark.parametrize(
    "case", [pytest.param(case, marks=pytest.mark.fleet(SUITES[case % 2])) for case in range(16)]
)
def test_guest_work(fleet, case):
    node = fleet["node"]
    digest = node.succeed(f"head -c 6000000 /dev/urandom | tee /persist/blob{case} | sha256sum")
    assert node.succeed(f"sha256sum /persist/blob{case}") .split()[0] == digest.split()[0]
    node.fail("test -e /persist/blob-from-an-earlier-test")
    node.succeed("touch /persist/blob-from-an-earlier-test")
