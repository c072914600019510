"""The harness's folders are its layers (docs/architecture.md, "The rule: data flows down"):
every import of every harness module, read with ast (lazy imports inside functions and
TYPE_CHECKING imports count too), forms no circle, and no layer imports a higher one."""
from __future__ import annotations

import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent

# Bottom first. A unit (a package or a module directly under harness/) imports only itself and
# the units of lower layers; units of one layer do not import each other.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation: data, the engine, the host's nix", {"specs", "private_dirs", "checkpoints", "vm", "nix"}),
    ("on a machine: start scripts, NixOS facts, deploy-rs, the cache, fleet snapshots together",
     {"images", "nixos", "deploy", "cache", "together"}),
    ("state directories", {"state_dirs"}),
    ("fleets", {"fleet", "fleet_specs"}),
    ("fleet users: the accelerator probe, kept fleets", {"accel", "keep"}),
    ("runners: the pytest plugin, the bench, the rehearsal", {"plugin", "bench", "twins"}),
    ("for a person: the CLI, pause()", {"cli", "interactive"}),
]


def modules() -> dict[str, Path]:
    """Every harness module by dotted name (a package by its __init__.py)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["harness", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The harness modules `name` imports (`from P import m` names module P.m when there is one)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_sees_lazy_and_type_checking_imports():
    edges = graph()
    assert "harness.vm.guest" in edges["harness.vm.shell_session"]
    assert "harness.plugin" in edges["harness.interactive"]  # inside pause()
    assert "harness.fleet" in edges["harness.keep.attach"]  # under TYPE_CHECKING


def test_no_import_circles():
    assert cycles(graph()) == []


def test_every_unit_has_a_layer():
    layered = set().union(*(units for _, units in LAYERS))
    units = {unit_of(m) for m in modules()} - {""}
    assert units - layered == set(), "a new package or module under harness/ needs a layer here"
    assert layered - units == set(), "a layer names a unit that no longer exists"


def test_no_layer_imports_its_own_or_a_higher_layer():
    rank = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}
    wrong = []
    for module, imported in sorted(graph().items()):
        unit = unit_of(module)
        for other in sorted(imported):
            other_unit = unit_of(other)
            if other_unit and other_unit != unit and unit and rank[other_unit] >= rank[unit]:
                wrong.append(f"{module} imports {other} ({LAYERS[rank[other_unit]][0]})")
    assert wrong == []


def test_the_engine_imports_nothing_of_the_harness_outside_itself():
    outside = {
        f"{module} imports {other}"
        for module, imported in graph().items() if unit_of(module) == "vm"
        for other in imported if unit_of(other) != "vm"
    }
    assert outside == set()
