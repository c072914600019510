"""ci/with-nix-inputs: the upstream trees' variables for the command it runs, and a clear error
for a folder that lacks one (a run meant to test against them must not quietly skip)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "ci" / "with-nix-inputs"
VARIABLES = ("NIXPKGS_LIB", "DEPLOY_RS_SRC", "SOPS_NIX")
TREES = {"nixpkgs.lib/lib": "default.nix", "deploy-rs": "interface.json", "sops-nix": "modules/sops/default.nix"}
PRINT = [sys.executable, "-c", f"import json, os; print(json.dumps({{v: os.environ.get(v) for v in {VARIABLES!r}}}))"]


def _inputs(tmp_path: Path, *, leave_out: str = "") -> Path:
    for tree, marker in TREES.items():
        if tree != leave_out:
            (tmp_path / "inputs" / tree / marker).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "inputs" / tree / marker).write_text("")
    return tmp_path / "inputs"


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=30,
                          env={**base, **(env or {})})


def test_sets_each_variable_to_its_tree(tmp_path):
    inputs = _inputs(tmp_path)
    done = _run(str(inputs), *PRINT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "NIXPKGS_LIB": str(inputs / "nixpkgs.lib/lib"),
        "DEPLOY_RS_SRC": str(inputs / "deploy-rs"),
        "SOPS_NIX": str(inputs / "sops-nix"),
    }


def test_keeps_a_variable_already_set(tmp_path):
    done = _run(str(_inputs(tmp_path)), *PRINT, env={"SOPS_NIX": "/elsewhere"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["SOPS_NIX"] == "/elsewhere"


@pytest.mark.parametrize("missing", sorted(TREES))
def test_a_missing_tree_stops_before_the_command(tmp_path, missing):
    done = _run(str(_inputs(tmp_path, leave_out=missing)), "touch", str(tmp_path / "ran"))
    assert done.returncode == 1
    assert f"{missing}/{TREES[missing]} is missing" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_the_command_s_status_is_its_own(tmp_path):
    assert _run(str(_inputs(tmp_path)), "sh", "-c", "exit 7").returncode == 7


def test_usage_without_a_command():
    done = _run("somewhere")
    assert done.returncode == 2 and "usage:" in done.stderr
