"""Fixtures for the nix / nixos / deploy / cache layer tests (helpers: deploy_testlib.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import HostShell
from deploy_testlib import StorePaths


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp dir removed afterwards; /tmp-based so paths stay short and readable."""
    path = Path(tempfile.mkdtemp(prefix="harness-deploy-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_shell(scratch: Path) -> Iterator[HostShell]:
    shell = HostShell("host", scratch / "shell-stderr.log")
    yield shell
    shell.cleanup()


@pytest.fixture
def store_paths(scratch: Path) -> Iterator[StorePaths]:
    """Register created store paths; after the scratch dir (and its GC roots) is removed, the
    paths are deleted so repeated runs do not grow /nix/store."""
    created = StorePaths()
    yield created
    # `scratch` tears down after us (fixture order), so remove its profile links now: their
    # gcroots/auto entries would otherwise keep the paths alive.
    for link in scratch.rglob("*-link"):
        if link.is_symlink():
            link.unlink()
    created.delete()
