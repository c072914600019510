"""The upstream source trees some self-tests evaluate against, each named by an environment
variable: nixpkgs' `lib` (NIXPKGS_LIB), deploy-rs (DEPLOY_RS_SRC) and sops-nix (SOPS_NIX).

`nix develop` sets all three to the flake's own inputs; `ci/with-nix-inputs DIR` sets them to
the trees in DIR. Unset, a test that needs one skips naming the variable and what it enables;
set to something that is not that tree, the test fails (a wrong path is a mistake, not a skip).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Input:
    variable: str
    what: str  # the tree the variable names
    marker: str  # a file that tree has
    enables: str  # what the tests that need it check

    def path(self) -> Path:
        value = os.environ.get(self.variable)
        if not value:
            pytest.skip(f"{self.variable} is not set: point it at {self.what} to {self.enables} "
                        "(`nix develop` sets it; so does `ci/with-nix-inputs DIR`)")
        path = Path(value)
        if not (path / self.marker).is_file():
            pytest.fail(f"{self.variable}={value} has no {self.marker}: it must be {self.what}")
        if shutil.which("nix-instantiate") is None:
            pytest.skip("nix-instantiate not found on PATH: install Nix (e.g. Debian's nix-bin)")
        return path


NIXPKGS_LIB = Input("NIXPKGS_LIB", "nixpkgs' lib directory", "default.nix",
                    "evaluate the fleet's NixOS modules with nixpkgs' real module system")
DEPLOY_RS_SRC = Input("DEPLOY_RS_SRC", "a deploy-rs source tree", "interface.json",
                      "check the deploy output against deploy-rs's schema and run its activation scripts")
SOPS_NIX = Input("SOPS_NIX", "a sops-nix source tree", "modules/sops/default.nix",
                 "evaluate the fleet's modules with sops-nix's real NixOS module, which every host imports")

ALL = (NIXPKGS_LIB, DEPLOY_RS_SRC, SOPS_NIX)


def nixpkgs_lib() -> Path:
    return NIXPKGS_LIB.path()


def deploy_rs_src() -> Path:
    return DEPLOY_RS_SRC.path()


def sops_nix() -> Path:
    return SOPS_NIX.path()
