"""Start scripts Nix already built, taken as they are instead of running `nix build`.

Inside a Nix build (the scenario checks, docs/scenario-checks.md) there is no nix daemon and no
network: the nodes' `system.build.vm` are inputs of the derivation, and `NDH_NODE_SCRIPTS` names
each node's start script as a JSON object:

    NDH_NODE_SCRIPTS='{"deployer": "/nix/store/...-nixos-vm/bin/run-deployer-vm", ...}'

Unset, the harness builds the nodes itself. Set but wrong (not JSON, a node missing, a path that
is not an executable file), it is an error, never a skip: whoever set it meant these scripts.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

ENV = "NDH_NODE_SCRIPTS"
SHAPE = '{"<node>": "<path of its run-<node>-vm script>", ...}'


class PrebuiltScriptsError(RuntimeError):
    """NDH_NODE_SCRIPTS is set but cannot provide the nodes asked for."""


def prebuilt_scripts(nodes: Sequence[str], environ: Mapping[str, str] = os.environ) -> dict[str, Path] | None:
    """Each node's start script from NDH_NODE_SCRIPTS; None when it is unset or empty."""
    raw = environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PrebuiltScriptsError(f"{ENV} is not JSON ({exc}); expected {SHAPE}") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise PrebuiltScriptsError(f"{ENV} must be a JSON object of strings, {SHAPE}; got {raw[:200]}")
    missing = [node for node in nodes if node not in table]
    if missing:
        raise PrebuiltScriptsError(
            f"{ENV} has no start script for {', '.join(missing)} (it names {', '.join(sorted(table)) or 'none'}); "
            f"add them, or unset {ENV} to let the harness build the nodes with nix"
        )
    scripts = {node: Path(table[node]) for node in nodes}
    for node, script in scripts.items():
        if not (script.is_file() and os.access(script, os.X_OK)):
            raise PrebuiltScriptsError(f"{ENV}: the start script of {node}, {script}, is not an executable file")
    return scripts
