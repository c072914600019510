"""Output that once lost the machine: many short lines written straight to the console. Each
guest is freshly booted (the failure showed on fresh guests), runs bare `seq 1 100000`, and
must answer a command afterwards. Real micro VMs."""
import pytest

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.fleet import Fleet, FleetSpec, NodeSpec
from harness.vm import CommandTimeout, MachineBroken

FRESH = FleetSpec("fresh", {"solo": NodeSpec(vlans=())})
SEQ_100K_BYTES = sum(len(str(n)) + 1 for n in range(1, 100001))


@pytest.mark.parametrize("boot", range(20))
def test_a_fresh_guest_survives_100k_short_lines(boot):
    fleet = Fleet(FRESH)
    try:
        fleet.boot()
        solo = fleet["solo"]
        out = solo.succeed("seq 1 100000", timeout=120)
        assert len(out) == SEQ_100K_BYTES and out.endswith("99999\n100000\n")
        assert solo.succeed("echo alive", timeout=30) == "alive\n"
    finally:
        fleet.close()


@pytest.mark.fleet(FRESH)
def test_10_mb_of_short_lines_then_the_next_command(fleet):
    solo = fleet["solo"]
    out = solo.succeed("(yes || true) | head -c 10000000", timeout=300)
    assert len(out) == 10_000_000 and set(out) == {"y", "\n"}
    assert solo.succeed("echo alive", timeout=30) == "alive\n"


@pytest.mark.fleet(FRESH)
def test_output_that_goes_on_after_a_timeout_does_not_reach_the_next_command(fleet):
    solo = fleet["solo"]
    with pytest.raises(CommandTimeout):
        solo.execute("for i in $(seq 1 20); do echo tick-$i; sleep 0.1; done", timeout=0.5)
    # Out of step until the loop has ended, then in step, and none of its ticks leak.
    in_step = Retrying(stop=stop_after_delay(60), wait=wait_fixed(0.5), retry=retry_if_exception_type(MachineBroken), reraise=True)
    assert in_step(solo.succeed, "echo next") == "next\n"
