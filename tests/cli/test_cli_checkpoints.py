"""Kept fleets keep their checkpoints (harness/checkpoints.py): a checkpoint a `--reuse-fleet`
run made on a fleet of `deploy-harness up` is restored, not made again, by a later run; `status`
lists it; `restore --all NAME` brings every node back to it, `restore NODE NAME` one node; a
run whose setup code or fleet spec changed makes it again; one a `--keep-vms` run made is
restored by a later `--reuse-fleet` run. Real micro VMs; the tests share one fleet, in file order."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

FLEET = "cps"
# The tests build on each other (the setup runs they count), so one worker runs them all, in
# file order: without a group, xdist spread them and a worker saw a history it did not make.
pytestmark = pytest.mark.xdist_group("cli-checkpoints")

# The child run's test: checkpoint `baseline` writes a random stamp on each node and returns
# them; every use checks the nodes hold the stamps it returns. Each setup run appends its
# VERSION to $CP_RUNS; the value goes to $CP_VALUE. VERSION and SPEC are filled in per run.
CHILD_TESTS = '''
import dataclasses, json, os
import pytest
from harness.fleet import FleetSpec
from harness.fleet_specs import MICRO

SPEC = {spec}


def stamped(fleet):
    def setup(directory):
        with open(os.environ["CP_RUNS"], "a") as runs:
            runs.write("{version}\\n")
        return {{node.name: node.succeed(
            "u=$(cat /proc/sys/kernel/random/uuid); echo $u > /root/stamp; echo $u").strip()
            for node in fleet}}
    return setup


@pytest.mark.fleet(SPEC)
def test_uses_the_checkpoint(fleet):
    for node in fleet:
        node.fail("test -e /root/stamp")  # every test starts pristine
    value = fleet.checkpoint("baseline", stamped(fleet))
    for node in fleet:
        assert node.succeed("cat /root/stamp").strip() == value[node.name]
    with open(os.environ["CP_VALUE"], "w") as out:
        json.dump(value, out)
'''

MICRO = "MICRO"
# The nodes of MICRO, with more memory: the same layout, so --reuse-fleet takes the kept
# fleet, but another spec, so the checkpoint's fingerprint differs.
MORE_MEMORY = ("FleetSpec('micro', {n: dataclasses.replace(s, memory_mb=s.memory_mb + 64) "
               "for n, s in MICRO.nodes.items()})")


def child_run(cli, tmp_path, *options: str, version: str = "v1", spec: str = MICRO) -> tuple[str, list[str], dict]:
    """One child pytest run of CHILD_TESTS: (its output, every setup run so far, the value)."""
    (tmp_path / "test_checkpoint_child.py").write_text(CHILD_TESTS.format(version=version, spec=spec))
    runs, value = tmp_path / "runs", tmp_path / "value.json"
    value.unlink(missing_ok=True)
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider",
         f"--vm-accel={cli.accel}", *options, "test_checkpoint_child.py"],
        cwd=tmp_path, env=dict(cli.env, CP_RUNS=str(runs), CP_VALUE=str(value)),
        capture_output=True, text=True, timeout=400,
    )
    output = child.stdout + child.stderr
    assert child.returncode == 0, output
    assert "1 passed" in child.stdout, output
    made = runs.read_text().split() if runs.exists() else []
    return output, made, json.loads(value.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("child")


@pytest.fixture(scope="module")
def first(cli, workdir):
    """`up`, then the run that makes the checkpoint: (its output, the value)."""
    cli.up("--name", FLEET)
    output, made, value = child_run(cli, workdir, "--reuse-fleet", FLEET)
    assert made == ["v1"]
    assert f"fleet micro: reusing kept fleet {FLEET}" in output
    assert "checkpoint baseline made in" in output
    return output, value


def kept_records(cli) -> dict:
    return json.loads((cli.fleets_dir / FLEET / "checkpoints.json").read_text())


def stamp(cli, node: str) -> str:
    return cli.ok("run", node, "--fleet", FLEET, "cat /root/stamp").strip()


def test_a_later_run_restores_the_kept_checkpoint_instead_of_making_it(cli, workdir, first):
    _, value = first
    output, made, again = child_run(cli, workdir, "--reuse-fleet", FLEET)
    assert made == ["v1"], "the kept checkpoint was restored, its setup not run again"
    assert again == value
    assert "checkpoint baseline" not in output
    assert kept_records(cli)["baseline"]["value"] == value


def test_status_lists_each_checkpoint_of_a_kept_fleet(cli, first):
    record = kept_records(cli)["baseline"]
    out = cli.ok("status", "--fleet", FLEET)
    line = next(line for line in out.splitlines() if line.startswith("  checkpoint baseline"))
    assert re.fullmatch(
        r"  checkpoint baseline +made \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(setup [\d.]+ s\), value kept "
        rf"\(\d+ bytes of JSON\), fingerprint {record['fingerprint'][:12]}", line), line
    assert f"`deploy-harness restore --all NAME --fleet {FLEET}` goes back to one" in out
    assert "makes it again if its setup's code or the fleet spec changed" in out
    # The lines of the fleet and its nodes are as before.
    assert out.startswith(f"fleet {FLEET}: running\n")
    assert re.search(r"\n  node alpha\s+running\s+pid \d+", out)


def test_restore_all_brings_every_node_back_to_the_checkpoint(cli, first):
    _, value = first
    for node in ("alpha", "beta"):
        cli.ok("run", node, "--fleet", FLEET, "echo changed > /root/stamp")
    out = cli.ok("restore", "--all", "baseline", "--fleet", FLEET)
    assert f"restored every node of fleet {FLEET} (alpha, beta) to checkpoint baseline at one moment" in out
    assert {node: stamp(cli, node) for node in ("alpha", "beta")} == value


def test_restore_of_one_node_to_a_checkpoint_leaves_the_others(cli, first):
    _, value = first
    for node in ("alpha", "beta"):
        cli.ok("run", node, "--fleet", FLEET, "echo changed > /root/stamp")
    out = cli.ok("restore", "alpha", "baseline", "--fleet", FLEET)
    assert "restored alpha to snapshot baseline, its part of checkpoint baseline; the other nodes stay" in out
    assert stamp(cli, "alpha") == value["alpha"]
    assert stamp(cli, "beta") == "changed"


def test_unknown_names_list_the_checkpoints_and_snapshots_there_are(cli, first):
    result = cli("restore", "--all", "nope", "--fleet", FLEET)
    assert result.returncode == 1
    assert (f"cannot restore every node of fleet {FLEET} to 'nope': no node has it, and nothing was "
            f"restored. Checkpoints of fleet {FLEET}: baseline; snapshots every node has: baseline, "
            "ndh-pristine") in result.stderr
    cli.ok("snapshot", "beta", "only-beta", "--fleet", FLEET)
    cli.ok("run", "beta", "--fleet", FLEET, "echo after-snapshot > /root/stamp")
    result = cli("restore", "--all", "only-beta", "--fleet", FLEET)
    assert result.returncode == 1
    assert "alpha lacks it, and nothing was restored" in result.stderr
    assert "snapshots of some nodes only: only-beta (beta)" in result.stderr
    assert stamp(cli, "beta") == "after-snapshot", "a refused restore --all restores no node"
    result = cli("restore", "alpha", "nope", "--fleet", FLEET)
    assert result.returncode == 1
    assert f"checkpoints of fleet {FLEET}, on every node: baseline)" in result.stderr
    # A node's own snapshot may not take a checkpoint's name: it would replace that node's part.
    result = cli("snapshot", "alpha", "baseline", "--fleet", FLEET)
    assert result.returncode == 1 and f"'baseline' is a checkpoint of fleet {FLEET}" in result.stderr
    for wrong in (("restore", "--all", "alpha", "baseline"), ("restore", "baseline")):
        result = cli(*wrong, "--fleet", FLEET)
        assert result.returncode == 1 and "restore" in result.stderr


def test_a_run_with_changed_setup_code_makes_the_checkpoint_again(cli, workdir, first):
    _, value = first
    before = kept_records(cli)["baseline"]["fingerprint"]
    output, made, again = child_run(cli, workdir, "--reuse-fleet", FLEET, version="v2")
    assert made == ["v1", "v2"]
    assert "checkpoint baseline: its setup, its chain or the fleet spec changed since it was made; making it again" in output
    assert again != value
    after = kept_records(cli)["baseline"]["fingerprint"]
    assert after != before
    assert f"fingerprint {after[:12]}" in cli.ok("status", "--fleet", FLEET)
    _, made, same = child_run(cli, workdir, "--reuse-fleet", FLEET, version="v2")
    assert (made, same) == (["v1", "v2"], again)


def test_a_run_with_another_fleet_spec_of_the_same_layout_makes_it_again(cli, workdir, first):
    output, made, _ = child_run(cli, workdir, "--reuse-fleet", FLEET, version="v2", spec=MORE_MEMORY)
    assert f"fleet micro: reusing kept fleet {FLEET}" in output  # the layout fits ...
    assert made == ["v1", "v2", "v2"], "... but the checkpoint was made for another spec"
    assert "the fleet spec changed since it was made; making it again" in output


def test_a_checkpoint_a_keep_vms_run_made_is_restored_by_a_later_reuse_run(cli, workdir, first):
    cli.ok("down", "--fleet", FLEET)  # the fleet a --keep-vms run keeps is called micro
    (workdir / "runs").unlink()
    output, made, value = child_run(cli, workdir, "--keep-vms")
    assert made == ["v1"] and "checkpoint baseline made in" in output
    assert "[vm] --keep-vms kept fleet micro" in output
    assert "checkpoint baseline " in cli.ok("status", "--fleet", "micro")
    output, made, again = child_run(cli, workdir, "--reuse-fleet", "micro")
    assert "fleet micro: reusing kept fleet micro" in output
    assert (made, again) == (["v1"], value)
    cli.ok("down", "--fleet", "micro")
