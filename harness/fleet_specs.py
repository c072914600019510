"""Fleet specs for `deploy-harness up --spec`: a built-in one by name, a FleetSpec in a Python
file (`path/to/file.py:NAME`, e.g. the spec a scenario uses, with any Image), or a JSON file."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from .specs import FleetSpec, NodeSpec

# Two micro nodes on VLAN 1 (192.168.1.1 alpha, 192.168.1.2 beta). They may reboot: a
# `reboot` typed in a shell restarts the guest instead of ending QEMU.
MICRO = FleetSpec(
    "micro",
    {
        "alpha": NodeSpec(vlans=(1,), allow_reboot=True),
        "beta": NodeSpec(vlans=(1,), allow_reboot=True),
    },
)
BUILTIN = {"micro": MICRO}
DEFAULT = "micro"

_NODE_KEYS = {"vlans", "memory_mb", "allow_reboot", "forward_ports"}


class SpecError(ValueError):
    """A --spec argument that names no usable fleet spec."""


def load(reference: str) -> FleetSpec:
    if reference in BUILTIN:
        return BUILTIN[reference]
    if reference.endswith(".json"):
        return _from_json(Path(reference))
    path, colon, attribute = reference.rpartition(":")
    if colon and path.endswith(".py"):
        return _from_python(Path(path), attribute)
    raise SpecError(
        f"unknown fleet spec {reference!r}: use a built-in name ({', '.join(BUILTIN)}), "
        "a JSON file (FILE.json), or a FleetSpec in a Python file (FILE.py:NAME)"
    )


def _from_python(path: Path, attribute: str) -> FleetSpec:
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist")
    # Its directory first on sys.path, as pytest's rootdir imports do (sibling modules).
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec = importlib.util.spec_from_file_location(f"_ndh_spec_{path.stem}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error in it is theirs to see
        raise SpecError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    spec = getattr(module, attribute, None)
    if not isinstance(spec, FleetSpec):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, FleetSpec))
        raise SpecError(
            f"{path} has no FleetSpec named {attribute!r} (FleetSpecs in it: {', '.join(found) or 'none'})"
        )
    return spec


def _from_json(path: Path) -> FleetSpec:
    """{"name": "pair", "nodes": {"alpha": {"vlans": [1], "memory_mb": 256,
    "allow_reboot": true, "forward_ports": [8080]}, "beta": {}}}"""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise SpecError(f"spec file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not data["nodes"]:
        raise SpecError(f'spec file {path}: expected {{"name": ..., "nodes": {{"NODE": {{...}}, ...}}}}')
    nodes = {}
    for name, node in data["nodes"].items():
        node = node or {}
        unknown = set(node) - _NODE_KEYS
        if unknown:
            raise SpecError(
                f"spec file {path}: node {name}: unknown keys {sorted(unknown)} (known: {sorted(_NODE_KEYS)})"
            )
        try:
            nodes[name] = NodeSpec(
                vlans=tuple(int(v) for v in node.get("vlans", [1])),
                memory_mb=int(node.get("memory_mb", 128)),
                allow_reboot=bool(node.get("allow_reboot", False)),
                forward_ports=tuple(int(p) for p in node.get("forward_ports", [])),
            )
        except (TypeError, ValueError) as exc:
            raise SpecError(f"spec file {path}: node {name}: {exc}") from exc
    try:
        return FleetSpec(str(data.get("name", path.stem)), nodes)
    except ValueError as exc:  # a fleet or node name that breaks the naming rules
        raise SpecError(f"spec file {path}: {exc}") from None
