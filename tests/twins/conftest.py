"""Fixtures of the rehearsal's tests (harness/twins): real git repositories and real nix."""
from __future__ import annotations

import shutil

import pytest

from twins_testlib import NIX_ENV, FleetRepo


@pytest.fixture
def fleet_repo(tmp_path):
    return FleetRepo(tmp_path / "repo")


@pytest.fixture
def offline_nix(monkeypatch):
    """The host's nix, with flakes on and no substituter (ci/determine-hosts evaluates)."""
    if shutil.which("nix") is None:
        pytest.skip("`nix` is not on PATH: ci/determine-hosts needs it to evaluate deploy.nodes")
    for name, value in NIX_ENV.items():
        monkeypatch.setenv(name, value)
