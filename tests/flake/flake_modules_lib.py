"""Evaluating homelab modules and the real hosts with nixpkgs' lib and sops-nix's module
through tests/flake/module-eval.nix: the helpers of the tests/flake module tests.

Needs NIXPKGS_LIB (nixpkgs' `lib` directory) and SOPS_NIX (a sops-nix source tree: every host
gets its real NixOS module, as flake.nix gives it); without them each test that evaluates is
skipped naming the variable (tests/support/upstream.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.upstream import nixpkgs_lib, sops_nix

REPO = Path(__file__).resolve().parents[2]
MODULE_EVAL = Path(__file__).resolve().parent / "module-eval.nix"
MOCKS = Path(__file__).resolve().parent / "mock-fleet.nix"
HOSTS = sorted(p.name for p in (REPO / "hosts").iterdir() if p.is_dir())
CANARY = "/deploy-rs-canary-" + "[0-9a-df-np-sv-z]" * 32


def nix_path(path: Path | str) -> str:
    return f"(/. + {json.dumps(str(path))})"


def inputs() -> str:
    """The upstream trees module-eval.nix takes, as Nix bindings `lib` and `sopsNix`."""
    return f"lib = import {nix_path(nixpkgs_lib())}; sopsNix = {nix_path(sops_nix())}; "


def run(modules: list[str], select: str, *, shape: str = "cache") -> subprocess.CompletedProcess[str]:
    expr = (
        f"let {inputs()}"
        f"r = import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; harmoniaShape = {json.dumps(shape)}; "
        f"modules = [ {' '.join(modules)} ]; }}; "
        f"config = r.config; in {select}"
    )
    return subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True, text=True, timeout=120,
    )


def evaluate(modules: list[str], select: str, *, shape: str = "cache"):
    result = run(modules, select, shape=shape)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(result.stdout)


def host(name: str, hosts_dir: Path = REPO / "hosts") -> str:
    """Host `name` as the flake builds it: its folder, hosts/common.nix and its name."""
    return (
        f"{{ imports = import {nix_path(REPO / 'lib' / 'host-modules.nix')} "
        f"{{ hostsDir = {nix_path(hosts_dir)}; }} {json.dumps(name)}; }}"
    )


FLEET_HOSTS = nix_path(REPO / "lib" / "fleet-hosts.nix")


def fleet_expr(select: str, *, twins: bool = True, extra_module: str = "{ }") -> str:
    """`select` over the real hosts as flake.nix assembles them (lib/fleet-hosts.nix), each
    evaluated by module-eval.nix: `fleet.<Host>` is { config; failedAssertions; warnings; }.
    twins=False leaves the twin module (twins/) out, as the baseline a twin is compared with;
    `extra_module` (Nix text) is added to every host, as a change to hosts/common.nix would be."""
    return (
        f"let {inputs()}"
        f"fleet = import {FLEET_HOSTS} {{ {'' if twins else 'twins = null; '}nixosSystem = {{ modules }}: "
        f"import {nix_path(MODULE_EVAL)} {{ inherit lib sopsNix; modules = modules ++ [ ({extra_module}) ]; }}; }}; "
        f"in {select}"
    )


def evaluate_fleet(select: str, *, twins: bool = True):
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", fleet_expr(select, twins=twins)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"evaluation failed:\n{result.stderr}"
    return json.loads(result.stdout)


HOMELAB = nix_path(REPO / "modules")
DEPLOY_HOST = '{ networking.hostName = "Box"; homelab.users.deploy.enable = true; }'
