"""Every .nix file in the repository parses (Debian's nix-bin `nix-instantiate --parse`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIPPED_DIRECTORIES = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache"}


def nix_files() -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(REPO):
        # Build results (result, result-*) are symlinks into the store; os.walk does not follow them.
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        found += [Path(directory) / f for f in sorted(files) if f.endswith(".nix")]
    return found


NIX_FILES = nix_files()


@pytest.mark.parametrize("path", NIX_FILES, ids=[str(p.relative_to(REPO)) for p in NIX_FILES])
def test_fleet_nix_file_parses(path):
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix-instantiate not found on PATH: install Nix (e.g. Debian's nix-bin) to parse .nix files")
    result = subprocess.run(
        ["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{path.relative_to(REPO)} does not parse:\n{result.stderr}"


def test_fleet_parse_covers_the_fleet():
    """The walk finds the fleet's files, so a broken glob cannot make the parse test vacuous."""
    relative = {str(p.relative_to(REPO)) for p in NIX_FILES}
    for expected in [
        "flake.nix",
        "lib/deploy-nodes.nix",
        "lib/deploy-sudo-commands.nix",
        "lib/host-modules.nix",
        "users/deploy/default.nix",
        "modules/default.nix",
        "modules/services/monitoring/default.nix",
        "hosts/Template/default.nix",
    ]:
        assert expected in relative
    assert not any(part in SKIPPED_DIRECTORIES for p in NIX_FILES for part in p.relative_to(REPO).parts)
