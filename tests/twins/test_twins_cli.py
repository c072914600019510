"""`deploy-harness rehearse`: its arguments, and its refusal, saying what is missing, on a
machine that cannot boot NixOS twins (this one: no Nix >= 2.18, KVM aborts, no twin fleet)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import nix
from harness.cli import HANDLERS, arguments
from harness.twins import requirements


def cli(*args, cwd, path=None):
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run([sys.executable, "-m", "harness.cli", "rehearse", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(fleet_repo):
    fleet_repo.commit("base")
    fleet_repo.commit("head")
    return fleet_repo


def test_base_and_head_are_required(tmp_path):
    done = cli("--base", "main", cwd=tmp_path)
    assert done.returncode == 2 and "the following arguments are required: --head" in done.stderr


def test_the_arguments_parse_into_what_the_handler_reads():
    args = arguments.parse(["rehearse", "--base", "origin/main", "--head", "renovate/nixpkgs",
                            "--host", "Niko", "--host", "Ingress", "--report-dir", "out"], HANDLERS)
    assert (args.base, args.head, args.hosts, args.report_dir) == ("origin/main", "renovate/nixpkgs",
                                                                   ["Niko", "Ingress"], Path("out"))
    assert args.accel == "auto" and args.handler is HANDLERS["rehearse"]
    defaults = arguments.parse(["rehearse", "--base", "a", "--head", "b"], HANDLERS)
    assert defaults.hosts == [] and defaults.report_dir == Path("rehearsal")


def test_a_bad_ref_is_named_before_anything_else(repo):
    done = cli("--base", "main~1", "--head", "renovate/gone", "--accel", "tcg", cwd=repo.path)
    assert done.returncode == 1
    assert "--head 'renovate/gone' names no commit" in done.stderr
    assert "NixOS twins" not in done.stderr


def test_outside_a_repository_it_says_so(tmp_path):
    done = cli("--base", "a", "--head", "b", cwd=tmp_path)
    assert done.returncode == 1 and "is not inside a git repository" in done.stderr


def test_without_nix_it_refuses_and_says_what_is_missing(repo, tmp_path):
    tools = tmp_path / "bin"  # git only: no nix on PATH
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git"))
    done = cli("--base", "main~1", "--head", "main", "--accel", "tcg", "--report-dir", str(tmp_path / "out"),
               cwd=repo.path, path=str(tools))
    assert done.returncode == 1, done.stderr
    assert "cannot boot NixOS twins on this machine; nothing was rehearsed" in done.stderr
    assert "nix is not installed or not on PATH" in done.stderr
    assert done.stderr.count("\n  - ") == 1  # only what this machine lacks: nix (tcg needs no KVM)
    assert done.stdout == "" and not (tmp_path / "out").exists()
    assert repo.worktrees() == [str(repo.path)]


def test_a_nix_too_old_for_nixpkgs_is_named(repo, tmp_path):
    found = shutil.which("nix")
    if found is None or nix.too_old(found) is None:
        pytest.skip("needs a nix older than 2.18 on PATH (Debian's nix-bin)")
    done = cli("--base", "main~1", "--head", "main", "--accel", "tcg", cwd=repo.path)
    assert done.returncode == 1 and "is older than 2.18" in done.stderr


def test_kvm_problems_are_named(tmp_path):
    assert requirements.kvm_problem("tcg", device=str(tmp_path / "kvm")) is None
    for requested in ("auto", "kvm"):
        problem = requirements.kvm_problem(requested, device=str(tmp_path / "kvm"))
        assert problem.startswith(f"no {tmp_path / 'kvm'}: NixOS twins need KVM") and "--accel tcg" in problem


def test_every_missing_piece_is_listed_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nix
    problems = requirements.missing("kvm", device=str(tmp_path / "kvm"))
    assert len(problems) == 2
    assert "nix is not installed" in problems[0] and "NixOS twins need KVM" in problems[1]
