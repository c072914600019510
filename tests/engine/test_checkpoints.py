"""Checkpoints on a two-node micro fleet: a state whose setup does real guest work is reached
once, later uses (in this test and the next ones) restore it, a failing setup is retried, a
checkpoint can start from another, a changed setup makes it again, and a later process reading
the fleet's directory reuses it. The tests of this module share one fleet, in file order."""
from __future__ import annotations

import json

import pytest

from harness import checkpoints
from harness.checkpoints import CheckpointError
from harness.fleet import FleetSpec, NodeSpec

CP_PAIR = FleetSpec("cp-pair", {"alpha": NodeSpec(vlans=(1,)), "beta": NodeSpec(vlans=(1,))})
pytestmark = pytest.mark.fleet(CP_PAIR, scope="module")

runs: list[str] = []  # every setup run of this module, by checkpoint name


def written(fleet, directory) -> dict:
    """Guest work of a few seconds under TCG: a file on each node, a running 'service', and a
    host file in the checkpoint's directory."""
    runs.append("written")
    digests = {}
    for node in fleet:
        node.succeed("dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null",
                     "for i in $(seq 1 3000); do echo $i; done > /root/numbers",
                     "(sleep 100000 >/dev/null 2>&1 & echo $! > /root/service.pid)")
        digests[node.name] = node.succeed("sha256sum /root/blob").split()[0]
    (directory / "note").write_text("made by setup\n")
    return {"digests": digests}


def chained(fleet, directory) -> list:
    base = reach_written(fleet)
    runs.append("chained")
    fleet["beta"].succeed("echo more > /root/more")
    return [sorted(base["digests"]), "more"]


def chained_setup(fleet):
    def setup(directory):
        return chained(fleet, directory)
    return setup


def written_setup(fleet):
    def setup(directory):
        return written(fleet, directory)
    return setup


def reach_written(fleet):
    return fleet.checkpoint("written", written_setup(fleet))


def test_the_first_use_runs_setup_and_a_later_use_restores_its_state(fleet):
    value = reach_written(fleet)
    assert runs == ["written"]
    assert sorted(value["digests"]) == ["alpha", "beta"]
    assert (checkpoints.directory(fleet, "written") / "note").read_text() == "made by setup\n"

    fleet["alpha"].succeed("rm /root/blob", "kill $(cat /root/service.pid)")
    fleet["beta"].succeed("echo changed > /root/numbers")
    assert reach_written(fleet) == value
    assert runs == ["written"], "a later use restores instead of running setup"
    for node in fleet:
        assert node.succeed("sha256sum /root/blob").split()[0] == value["digests"][node.name]
        assert node.succeed("tail -n 1 /root/numbers").strip() == "3000"
        node.succeed("kill -0 $(cat /root/service.pid)")  # the process runs again, restored


def test_a_later_test_starts_pristine_and_gets_the_checkpoint_back(fleet):
    for node in fleet:
        node.fail("test -e /root/blob")  # the plugin restored the pristine snapshot
    value = reach_written(fleet)
    assert runs == ["written"]
    assert fleet["beta"].succeed("sha256sum /root/blob").split()[0] == value["digests"]["beta"]


def test_a_failing_setup_leaves_no_checkpoint_and_the_next_use_tries_again(fleet):
    def failing(directory):
        runs.append("flaky")
        fleet["alpha"].succeed("touch /root/half-done")
        raise RuntimeError("setup failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        fleet.checkpoint("flaky", failing)
    assert "flaky" not in checkpoints.records(fleet.state_dir)

    def working(directory):
        runs.append("flaky")
        return fleet["alpha"].succeed("ls /root/half-done && echo ok").split()[-1]

    assert fleet.checkpoint("flaky", working) == "ok"
    assert fleet.checkpoint("flaky", working) == "ok"
    assert runs.count("flaky") == 2


def test_a_checkpoint_can_start_from_another(fleet):
    before = list(runs)
    setup = chained_setup(fleet)
    assert fleet.checkpoint("chained", setup) == [["alpha", "beta"], "more"]
    assert runs[len(before):] == ["chained"], "written was restored, not made again"
    fleet["beta"].succeed("rm /root/more")
    fleet.checkpoint("chained", setup)
    assert runs[len(before):] == ["chained"], "chained was restored, not made again"
    assert fleet["beta"].succeed("cat /root/more").strip() == "more"
    assert fleet["alpha"].succeed("test -s /root/blob && echo yes").strip() == "yes"
    assert checkpoints.records(fleet.state_dir)["chained"].parents == ("written",)


def test_a_changed_setup_makes_the_checkpoint_again(fleet):
    fleet.checkpoint("versioned", lambda d: fleet["alpha"].succeed("echo one > /root/v; cat /root/v").strip())

    def second(directory):
        runs.append("versioned-2")
        return fleet["alpha"].succeed("echo two > /root/v; cat /root/v").strip()

    assert fleet.checkpoint("versioned", second) == "two"
    assert runs[-1] == "versioned-2"
    assert fleet["alpha"].succeed("cat /root/v").strip() == "two"


def test_a_later_process_reuses_the_kept_checkpoints(fleet):
    """What a later process sees of a kept fleet: only the directory's records, a new object."""
    record = checkpoints.records(fleet.state_dir)["written"]
    assert json.loads((fleet.state_dir / "checkpoints.json").read_text())["written"]["value"] == record.value
    later = checkpoints.Checkpoints(fleet)  # reads checkpoints.json as a new process would
    fleet["alpha"].succeed("rm -f /root/blob")

    made = list(runs)
    assert later.reach("written", written_setup(fleet)) == record.value
    assert runs == made, "the kept checkpoint was restored, its setup not run"
    fleet["alpha"].succeed("test -s /root/blob")


def test_a_value_that_is_not_plain_data_is_refused_and_not_kept(fleet):
    with pytest.raises(CheckpointError, match="not plain data"):
        fleet.checkpoint("unplain", lambda directory: {"when": object()})
    with pytest.raises(CheckpointError, match="does not survive JSON"):
        fleet.checkpoint("unplain", lambda directory: ("a", "tuple"))
    assert "unplain" not in checkpoints.records(fleet.state_dir)


@pytest.mark.parametrize("name", ["", "Baseline", "ndh-pristine", "../x", "a b", "x" * 64])
def test_checkpoint_names_follow_one_rule(name):
    with pytest.raises(ValueError, match="checkpoint name"):
        checkpoints.check_name(name)
