"""The flake the twins' deployer deploys from (harness/twins/twin_fleet.py): its input is the
head's flake in the deployer's store, its deploy.nodes exactly the booted twins' twinDeploy
nodes. Evaluated by nix-instantiate: the flake's outputs function applied to a fleet stand-in."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from harness.twins import twin_fleet


def evaluate(text: str, tmp_path, select: str):
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix-instantiate not on PATH")
    flake = tmp_path / "flake.nix"
    flake.write_text(text)
    expr = (f"let f = import {json.dumps(str(flake))}; fleet = {{ twinDeploy.nodes = {{ Development = 1; "
            f"Production = 2; Niko = 3; }}; }}; in {select}")
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_only_the_booted_twins_are_nodes(tmp_path):
    text = twin_fleet.deployer_flake_text("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source", ["Production", "Development"])
    assert evaluate(text, tmp_path, "(f.outputs { inherit fleet; }).deploy.nodes") == {"Development": 1, "Production": 2}
    assert evaluate(text, tmp_path, "f.inputs.fleet.url") == "path:/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source"


def test_a_twin_that_is_no_node_is_simply_absent(tmp_path):
    # A host without the deploy user has no twinDeploy node: the flake does not invent one.
    text = twin_fleet.deployer_flake_text("/nix/store/x-source", ["Template"])
    assert evaluate(text, tmp_path, "(f.outputs { inherit fleet; }).deploy.nodes") == {}
