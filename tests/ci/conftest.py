"""Fixtures for the tests of ci/ scripts and .forgejo/workflows (run as real subprocesses)."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI_DIR = REPO / "ci"
WORKFLOWS_DIR = REPO / ".forgejo" / "workflows"


@pytest.fixture
def run_ci():
    """Run ci/<script> as a CLI subprocess.

    Through sys.executable rather than the shebang: on machines where `python3` is a
    pyenv shim that costs ~0.15 s per call. test_ci_scripts.py runs each script
    through its shebang once.
    """

    def run(script, *args, env=None, input=None, cwd=None):
        full_env = dict(os.environ)
        full_env.pop("GITHUB_OUTPUT", None)  # an outer CI run must not leak into the test
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, str(CI_DIR / script), *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            input=input,
            cwd=cwd,
            timeout=120,
        )

    return run


@pytest.fixture
def real_nix():
    """The host's nix (2.8 here: flakes need --extra-experimental-features, cilib adds it)."""
    nix = shutil.which("nix")
    if nix is None:
        pytest.skip("`nix` is not on PATH: the nix eval/build tests need a real Nix")
    return nix


@pytest.fixture
def fake_bin(tmp_path):
    """A directory put first on PATH, for recording stand-ins of `deploy` and `ssh`.

    They record what they were asked and do the local part of the work; they never
    claim a result on their own.
    """
    directory = tmp_path / "fake-bin"
    directory.mkdir()

    def add(name, script):
        path = directory / name
        path.write_text("#!/bin/bash\n" + textwrap.dedent(script))
        path.chmod(0o755)
        return path

    add.path = directory
    add.env_path = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
    return add


def write_flake(directory, body):
    """A flake with no inputs (no nixpkgs is reachable here): builtins-only outputs."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "flake.nix").write_text(textwrap.dedent(body))
    return directory


@pytest.fixture
def fleet_flake(tmp_path):
    """A fleet-shaped flake: three configurations, two deployable (Template is not)."""
    return write_flake(
        tmp_path / "fleet",
        """\
        {
          outputs = { self }: {
            nixosConfigurations = { Ingress = {}; Niko = {}; Template = {}; };
            deploy.nodes = {
              Ingress = { hostname = "ingress.test"; sshUser = "deploy"; profiles.system = {}; };
              Niko = { hostname = "niko.test"; sshUser = "deploy"; profiles.system = {}; };
            };
          };
        }
        """,
    )


@pytest.fixture
def nix_build_env(real_nix):
    """Env for real `nix build`s here: flakes on (the runner has them on, docs/ci.md), no
    sandbox (the tiny builders use the host's /bin/sh; there is no nixpkgs), and no
    substituter (none is reachable)."""
    return {"NIX_CONFIG": "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\n"}


@pytest.fixture
def contract_flake(tmp_path):
    """deploy.nodes shaped like the fleet's flake: `system` profiles under pure
    evaluation; only the `test` profile of HOMELAB_DEPLOY_TEST_HOST under --impure."""
    return write_flake(
        tmp_path / "contract",
        """\
        {
          outputs = { self }:
            let
              testHost = builtins.getEnv "HOMELAB_DEPLOY_TEST_HOST";
              profile = name: derivation {
                inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/bin/mkdir $out" ];
              };
              hosts = [ "Ingress" "Niko" ];
              nodes = f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) hosts);
            in {
              deploy.nodes =
                if testHost == "" then nodes (h: { profiles.system.path = profile "system-${h}-@STAMP@"; })
                else { ${testHost}.profiles.test.path = profile "test-${testHost}-@STAMP@"; };
            };
        }
        """.replace("@STAMP@", tmp_path.name),
    )
