"""ci/require-lock: CI refuses an unlocked, untracked, incomplete or stale flake.lock, and says
how to make the first lock. Runs the script with the host's real nix on flakes without inputs or
with local `path:` ones (the only flakes nix can lock here: no network), each locked as its
flake.nix says, and on broken lock files written by hand."""
import json
import os
import subprocess

import pytest


def write_flake(directory, text):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "flake.nix").write_text(text)
    return directory


def git(directory, *args):
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                        "PATH": "/usr/bin:/bin", "HOME": str(directory)})


NIX_FLAKES = ["--extra-experimental-features", "nix-command flakes"]
OFFLINE = {"NIX_CONFIG": "substituters =\n"}


def flake_inputs(directory):
    """The inputs flake.nix declares, as nix reads them: `inputs`, plus the arguments of `outputs`
    (an undeclared one is a registry input), less `self`."""
    expr = (f"let f = import {json.dumps(str(directory / 'flake.nix'))}; in builtins.attrNames "
            "((f.inputs or { }) // removeAttrs (builtins.functionArgs f.outputs) [ \"self\" ])")
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def lock(real_nix, directory):
    """flake.lock for the flake.nix in `directory`, made from its inputs. With inputs, nix locks
    them (local `path:` inputs only: no network). Without, the lock `nix flake lock` writes for
    such a flake (nix 2.8 writes none, newer ones write this)."""
    if flake_inputs(directory):
        proc = subprocess.run([real_nix, *NIX_FLAKES, "flake", "lock", str(directory)], capture_output=True,
                              text=True, env={**os.environ, **OFFLINE})
        assert proc.returncode == 0, proc.stderr
    else:
        (directory / "flake.lock").write_text(json.dumps({"nodes": {"root": {}}, "root": "root", "version": 7}))


@pytest.fixture
def flake(tmp_path):
    return write_flake(tmp_path / "repo", "{ outputs = { self }: { answer = 42; }; }\n")


def test_an_unlocked_flake_is_refused_with_how_to_make_the_first_lock(run_ci, flake):
    proc = run_ci("require-lock", "--flake", str(flake))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {flake}/flake.lock does not exist: this flake is unlocked. ")
    assert "Make the lock on a machine with network" in proc.stderr and "`nix flake lock`" in proc.stderr and "`git add flake.lock` and commit it" in proc.stderr


def test_a_lock_git_does_not_track_is_refused(run_ci, real_nix, flake):
    git(flake, "init", "-q")
    git(flake, "add", "flake.nix")
    lock(real_nix, flake)
    proc = run_ci("require-lock", "--flake", str(flake))
    assert proc.returncode == 1
    assert f"{flake}/flake.lock is not tracked by git" in proc.stderr


def test_a_committed_complete_lock_passes(run_ci, real_nix, flake):
    git(flake, "init", "-q")
    lock(real_nix, flake)
    git(flake, "add", "flake.nix", "flake.lock")
    git(flake, "commit", "-q", "-m", "lock")
    proc = run_ci("require-lock", "--flake", str(flake))
    assert proc.returncode == 0, proc.stderr
    assert "is committed and complete" in proc.stdout


def test_a_committed_lock_of_a_flake_with_an_input_passes(run_ci, real_nix, tmp_path):
    dep = write_flake(tmp_path / "dep", "{ outputs = { self }: { }; }\n")
    flake = write_flake(tmp_path / "with-input", f'{{ inputs.dep.url = "path:{dep}"; outputs = {{ self, dep }}: {{ }}; }}\n')
    git(flake, "init", "-q")
    git(flake, "add", "flake.nix")  # nix reads a git flake's tracked files only
    lock(real_nix, flake)
    assert json.loads((flake / "flake.lock").read_text())["nodes"]["root"]["inputs"] == {"dep": "dep"}
    git(flake, "add", "flake.nix", "flake.lock")
    git(flake, "commit", "-q", "-m", "lock")
    proc = run_ci("require-lock", "--flake", str(flake), env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    assert "is committed and complete" in proc.stdout


def test_the_lock_of_a_test_flake_follows_its_inputs(real_nix, tmp_path):
    # A registry input named only in `outputs` counts too, as it does for nix.
    flake = write_flake(tmp_path / "inputs", '{ inputs.a.url = "path:/a"; outputs = { self, a, b }: { }; }\n')
    assert flake_inputs(flake) == ["a", "b"]


def test_an_input_missing_from_the_lock_is_named(run_ci, tmp_path):
    flake = write_flake(tmp_path / "inputs", '{ inputs.nixpkgs.url = "http://127.0.0.1:9/x.tar.gz"; outputs = { self, nixpkgs }: { }; }\n')
    (flake / "flake.lock").write_text(json.dumps(
        {"nodes": {"root": {"inputs": {"nixpkgs": "nixpkgs"}}, "nixpkgs": {"original": {"type": "tarball"}}},
         "root": "root", "version": 7}))
    proc = run_ci("require-lock", "--flake", str(flake))
    assert proc.returncode == 1
    assert "does not lock the input(s) nixpkgs" in proc.stderr


def test_a_lock_that_no_longer_matches_flake_nix_is_refused_by_nix_itself(run_ci, real_nix, tmp_path):
    # Locked without inputs, then an input was added: nix would have to change the lock.
    flake = write_flake(tmp_path / "stale", "{ outputs = { self }: { }; }\n")
    lock(real_nix, flake)
    (flake / "flake.nix").write_text('{ inputs.nixpkgs.url = "http://127.0.0.1:9/x.tar.gz"; outputs = { self, nixpkgs }: { }; }\n')
    proc = run_ci("require-lock", "--flake", str(flake),
                  env={"NIX_CONFIG": "substituters =\ndownload-attempts = 1\n"})
    assert proc.returncode == 1
    assert "checking that" in proc.stderr and "matches flake.nix" in proc.stderr
    assert "--no-update-lock-file" in proc.stderr
