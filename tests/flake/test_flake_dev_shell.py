"""flake.nix's dev shell names the upstream trees the self-tests evaluate against, from the
flake's own inputs, so `nix develop -c pytest tests/` runs those tests instead of skipping them.
Evaluated with builtins alone: the inputs are directories made here, shaped like the trees
(the file tests/support/upstream.py checks for in each)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import require
from support.upstream import ALL

REPO = Path(__file__).resolve().parents[2]
MOCKS = REPO / "tests" / "flake" / "mock-fleet.nix"
INPUT_OF = {"NIXPKGS_LIB": "nixpkgs", "DEPLOY_RS_SRC": "deploy-rs", "SOPS_NIX": "sops-nix"}


def dev_shell_environment(inputs: dict[str, Path]) -> dict:
    """The dev shell's variables with the flake's inputs at these paths (strings: nothing is
    copied into the store)."""
    require("nix-instantiate")
    variables = sorted(i.variable for i in ALL)
    paths = {name: str(path) for name, path in inputs.items()}
    expr = f"""
      let
        m = import (/. + {json.dumps(str(MOCKS))}) {{ }};
        input = name: extra: extra // {{ outPath = (builtins.fromJSON {json.dumps(json.dumps(paths))}).${{name}}; }};
        out = (import (/. + {json.dumps(str(REPO / "flake.nix"))})).outputs {{
          self = out;
          nixpkgs = input "nixpkgs" (m.nixpkgs // {{ legacyPackages.x86_64-linux.mkShell = args: args; }});
          deploy-rs = input "deploy-rs" m.deploy-rs;
          sops-nix = input "sops-nix" m.sops-nix;
        }};
        shell = out.devShells.x86_64-linux.default;
      in builtins.listToAttrs (map (name: {{ inherit name; value = shell.${{name}} or null; }})
        (builtins.fromJSON {json.dumps(json.dumps(variables))}))"""
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_dev_shell_names_every_upstream_tree_the_tests_read(tmp_path):
    inputs = {name: tmp_path / name for name in ("nixpkgs", "deploy-rs", "sops-nix")}
    for tree in ALL:
        root = inputs[INPUT_OF[tree.variable]]
        # nixpkgs' lib is a folder of the nixpkgs input; the other variables name the input.
        marker = root / ("lib" if tree.variable == "NIXPKGS_LIB" else "") / tree.marker
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")

    env = dev_shell_environment(inputs)
    assert set(INPUT_OF) == {tree.variable for tree in ALL}, "a test reads a tree the shell does not set"
    for tree in ALL:
        value = env[tree.variable]
        assert value, f"the dev shell does not set {tree.variable}"
        assert (Path(value) / tree.marker).is_file(), f"{tree.variable}={value} is not {tree.what}"
    assert env["NIXPKGS_LIB"] == f"{inputs['nixpkgs']}/lib"
    assert env["DEPLOY_RS_SRC"] == str(inputs["deploy-rs"]) and env["SOPS_NIX"] == str(inputs["sops-nix"])


def test_the_readme_says_what_the_dev_shell_sets():
    readme = (REPO / "README.md").read_text()
    command = "nix develop -c pytest tests/"
    assert command in readme
    around = readme[readme.index(command):][:1200]
    for variable in INPUT_OF:
        assert variable in around, f"README: the dev shell's {variable} is not explained near `{command}`"
