"""The rules of harness/checkpoints.py that need no VM: when a record is written, what makes a
checkpoint again, what a fleet without snapshots does. The fleet here only records which of
its verbs were called; test_checkpoints.py runs the same on real micro VMs."""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from harness import checkpoints
from harness.checkpoints import CheckpointError, Checkpoints
from harness.fleet import FleetSpec, NodeSpec

SPEC = FleetSpec("rules", {"alpha": NodeSpec()})


class RecordingFleet:
    """The verbs checkpoints call, recorded; a snapshot may be made to fail."""

    def __init__(self, state_dir: Path, spec: FleetSpec = SPEC, cold_boot: dict | None = None) -> None:
        self.state_dir, self.spec = state_dir, spec
        self.cold_boot = cold_boot or {}
        self.calls: list[str] = []
        self.said: list[str] = []
        self.snapshot_error: BaseException | None = None

    @property
    def snapshots_supported(self) -> bool:
        return not self.cold_boot

    def snapshot(self, name: str) -> None:
        self.calls.append(f"snapshot {name}")
        if self.snapshot_error is not None:
            raise self.snapshot_error

    def restore(self, name: str) -> None:
        self.calls.append(f"restore {name}")

    def progress(self, text: str) -> None:
        self.said.append(text)


def counting(result, runs: list):
    def setup(directory):
        runs.append(directory.name)
        return result
    return setup


def test_a_snapshot_that_fails_leaves_no_record_and_the_next_use_makes_it(tmp_path):
    fleet, runs = RecordingFleet(tmp_path), []
    fleet.snapshot_error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        checkpoints.reach(fleet, "base", counting(1, runs))
    assert checkpoints.records(tmp_path) == {}
    fleet.snapshot_error = None
    assert checkpoints.reach(fleet, "base", counting(1, runs)) == 1
    assert checkpoints.reach(fleet, "base", counting(1, runs)) == 1
    assert runs == ["base", "base"]
    assert fleet.calls == ["snapshot base", "snapshot base", "restore base"]


def test_the_record_is_written_whole_and_read_by_a_later_process(tmp_path):
    fleet, runs = RecordingFleet(tmp_path), []
    checkpoints.reach(fleet, "base", counting({"generation": 2}, runs))
    assert not list(tmp_path.glob("*.partial"))
    kept = json.loads((tmp_path / "checkpoints.json").read_text())
    assert kept["base"]["value"] == {"generation": 2} and kept["base"]["parents"] == []
    later = Checkpoints(RecordingFleet(tmp_path))
    assert later.reach("base", counting({"generation": 2}, runs)) == {"generation": 2}
    assert runs == ["base"]


def test_a_setup_of_other_code_makes_it_again_and_says_why(tmp_path):
    fleet, runs = RecordingFleet(tmp_path), []
    checkpoints.reach(fleet, "base", counting(1, runs))
    assert checkpoints.reach(fleet, "base", lambda directory: runs.append("other") or 2) == 2
    assert runs == ["base", "other"]
    assert any("base: its setup, its chain or the fleet spec changed" in line for line in fleet.said)


def test_another_fleet_spec_makes_it_again(tmp_path):
    runs = []
    checkpoints.reach(RecordingFleet(tmp_path), "base", counting(1, runs))
    other = FleetSpec("rules", {"alpha": NodeSpec(memory_mb=256)})
    checkpoints.reach(RecordingFleet(tmp_path, other), "base", counting(1, runs))
    assert runs == ["base", "base"]


def parent_setup(directory):
    return "parent"


def test_a_chained_checkpoint_is_made_again_when_its_parent_was(tmp_path):
    fleet, runs = RecordingFleet(tmp_path), []

    def child(directory):
        runs.append("child")
        return checkpoints.reach(fleet, "parent", parent_setup) + "+child"

    assert checkpoints.reach(fleet, "child", child) == "parent+child"
    assert checkpoints.records(tmp_path)["child"].parents == ("parent",)
    assert checkpoints.reach(fleet, "child", child) == "parent+child"
    assert runs == ["child"]
    # The parent made again by other code: its fingerprint moves, so the child's no longer fits.
    checkpoints.reach(fleet, "parent", lambda directory: "parent")
    assert checkpoints.reach(fleet, "child", child) == "parent+child"
    assert runs == ["child", "child"]


def _setup_module(folder: Path, name: str, helper_returns: str):
    """A module on disk whose setup calls a helper of its own."""
    path = folder / f"{name}.py"
    path.write_text(f"def helper():\n    return {helper_returns!r}\n\n\n"
                    "def setup(directory):\n    return helper()\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.setup


def test_the_fingerprint_covers_the_functions_of_its_module_a_setup_calls(tmp_path):
    rules = Checkpoints(RecordingFleet(tmp_path))
    same = [rules.fingerprint(_setup_module(tmp_path, name, "v1"), ()) for name in ("cp_a", "cp_b")]
    changed = rules.fingerprint(_setup_module(tmp_path, "cp_c", "v2"), ())
    assert same[0] == same[1]
    assert changed != same[0]


def test_without_snapshots_setup_runs_at_every_use_said_once(tmp_path):
    fleet, runs = RecordingFleet(tmp_path, cold_boot={"alpha": "a 9p share"}), []
    for _ in range(3):
        assert checkpoints.reach(fleet, "base", counting([1], runs)) == [1]
    assert runs == ["base"] * 3
    assert fleet.calls == []
    assert len([line for line in fleet.said if "run their setup at every use" in line]) == 1


@pytest.mark.parametrize(("value", "words"), [
    ({"when": object()}, "not plain data"),
    ((1, 2), "does not survive JSON"),
    ({1: "x"}, "does not survive JSON"),
    (float("nan"), "not plain data"),
])
def test_a_value_that_is_not_plain_data_is_refused_before_any_snapshot(tmp_path, value, words):
    fleet = RecordingFleet(tmp_path)
    with pytest.raises(CheckpointError, match=words):
        checkpoints.reach(fleet, "base", lambda directory: value)
    assert fleet.calls == [] and checkpoints.records(tmp_path) == {}


def test_an_unreadable_record_file_says_how_to_start_afresh(tmp_path):
    (tmp_path / "checkpoints.json").write_text("{half")
    with pytest.raises(CheckpointError, match="delete it to start afresh"):
        checkpoints.records(tmp_path)


def test_a_record_says_when_it_was_made_and_one_of_an_older_version_reads_without(tmp_path):
    before = time.time()
    checkpoints.reach(RecordingFleet(tmp_path), "base", counting(1, []))
    made = checkpoints.records(tmp_path)["base"].made
    assert made is not None and before - 1 <= made <= time.time() + 1
    raw = json.loads((tmp_path / "checkpoints.json").read_text())
    del raw["base"]["made"]
    (tmp_path / "checkpoints.json").write_text(json.dumps(raw))
    assert checkpoints.records(tmp_path)["base"].made is None
    runs = []
    assert Checkpoints(RecordingFleet(tmp_path)).reach("base", counting(1, runs)) == 1
    assert runs == [], "an older record is still restored"
