"""Fixtures for tests/nixos (helpers: nixos_testlib.py)."""
from __future__ import annotations

import pytest
from nixos_testlib import Root, Store
from support import require


@pytest.fixture
def store(tmp_path):
    require("nix-store", "nix-env")
    created = Store(tmp_path / "store-src")
    yield created
    # Profile links are GC roots (gcroots/auto): drop them before deleting the paths.
    for link in tmp_path.rglob("*-link"):
        if link.is_symlink():
            link.unlink()
    created.delete()


@pytest.fixture
def root(tmp_path) -> Root:
    return Root(tmp_path / "machine")
