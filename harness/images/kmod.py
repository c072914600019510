"""Kernel modules from an unpacked kernel package: dependency order without depmod."""
from __future__ import annotations

import re
from pathlib import Path

_DEPENDS = re.compile(rb"depends=([^\x00]*)\x00")


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores, as the kernel names them) -> .ko file."""
    return {ko.stem.replace("-", "_"): ko for ko in modules_dir.rglob("*.ko")}


def depends_of(ko: Path) -> list[str]:
    """The `depends=` list from the module's .modinfo strings."""
    match = _DEPENDS.search(ko.read_bytes())
    if not match or not match.group(1):
        return []
    return [name.decode() for name in match.group(1).split(b",")]


def load_order(wanted: list[str], index: dict[str, Path]) -> list[str]:
    """`wanted` and everything they depend on, each after its dependencies."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise FileNotFoundError(f"kernel module {name} is not in the kernel package")
        for dep in depends_of(index[name]):
            visit(dep, chain + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order
