"""`deploy-harness up --twins A,B` (harness/twins/up_twins.py): the list checked against hosts/,
the refusal naming what this machine lacks (here: Nix older than 2.18, KVM that aborts), and,
with those checks passed, the spec made from facts lib/twin-facts.nix evaluates over the real
hosts (module-eval.nix's NixOS stand-ins, nixpkgs' real lib; needs NIXPKGS_LIB and SOPS_NIX)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import HANDLERS, arguments
from harness.twins import fleet_spec, requirements, up_twins
from harness.twins.fleet_spec import DEPLOYER

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "flake"))
from flake_modules_lib import fleet_expr, nix_path  # noqa: E402


def up(*args, tmp_path, path=None):
    env = {**os.environ, "NDH_FLEETS_DIR": str(tmp_path / "fleets"), "NDH_FLAKE": str(REPO)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "harness.cli", "up", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_option_parses():
    args = arguments.parse(["up", "--twins", "Development,Production"], HANDLERS)
    assert args.twins == "Development,Production" and args.spec is None and args.handler is HANDLERS["up"]


def test_an_unknown_host_is_refused_before_anything_else(tmp_path):
    done = up("--twins", "Development,nosuch", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "no host named nosuch; hosts (folders of hosts/): Development, Ingress, Niko" in done.stderr
    assert not (tmp_path / "fleets").exists() or not any((tmp_path / "fleets").iterdir())


def test_twins_and_spec_together_are_refused(tmp_path):
    done = up("--twins", "Development", "--spec", "micro", tmp_path=tmp_path)
    assert done.returncode == 1 and "--twins and --spec name two different fleets" in done.stderr


def test_without_nix_it_refuses_naming_what_is_missing(tmp_path):
    tools = tmp_path / "bin"  # no nix on PATH
    tools.mkdir()
    done = up("--twins", "Development,Production", "--accel", "tcg", tmp_path=tmp_path, path=str(tools))
    assert done.returncode == 1, done.stderr
    assert "cannot boot the twins of Development, Production on this machine; nothing was booted" in done.stderr
    assert "nix is not installed or not on PATH" in done.stderr
    assert not (tmp_path / "fleets").exists() or not any((tmp_path / "fleets").iterdir())


def test_this_machine_s_nix_is_named_too_old(tmp_path):
    found = shutil.which("nix")
    if found is None or requirements.nix.too_old(found) is None:
        pytest.skip("needs a nix older than 2.18 on PATH (Debian's nix-bin)")
    done = up("--twins", "Development", "--accel", "tcg", tmp_path=tmp_path)
    assert done.returncode == 1 and "is older than 2.18" in done.stderr


def test_missing_kvm_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(requirements, "nix_problem", lambda: None)
    with pytest.raises(up_twins.TwinsRefused, match=r"NixOS twins need KVM .*--accel tcg"):
        up_twins.setup("Development", "kvm", flake=str(REPO), device=str(tmp_path / "kvm"))


def test_with_the_requirements_met_the_spec_comes_from_the_facts(monkeypatch):
    expr = fleet_expr(f"import {nix_path(REPO / 'lib' / 'twin-facts.nix')} fleet")
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    evaluated = fleet_spec.facts_from_json(json.loads(done.stdout))
    asked = []
    monkeypatch.setattr(requirements, "missing", lambda accel, device: [])
    monkeypatch.setattr(fleet_spec, "read_facts", lambda flake: asked.append(flake) or evaluated)
    made = up_twins.setup("Production,Development", "tcg", flake=str(REPO), name="mine")
    assert asked == [str(REPO)]
    assert made.spec.name == "mine" and sorted(made.spec.nodes) == ["Development", "Production", DEPLOYER]
    assert made.spec.image.hosts == ("Production", "Development")
