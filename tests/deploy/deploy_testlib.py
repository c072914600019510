"""Test helpers for the nix / nixos / deploy / cache layer tests (imported by conftest and
tests; a unique module name so it cannot clash with other test directories' helpers).

The host's real bash behind a machine's verbs is `support.HostShell`.
"""

from __future__ import annotations

import os
import subprocess

from support import require


def require_nix() -> None:
    require("nix", "nix-store", "nix-env", package="nix-bin")


class StorePaths:
    """Store paths a test created; deleted at teardown once their temp roots are gone."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock_files: list[str] = []

    def add(self, *paths: str) -> None:
        self.paths.extend(paths)

    def add_lock_of(self, out_path: str) -> None:
        """A build nix refused to start leaves '<out>.lock' (an empty file) in the store."""
        self.lock_files.append(out_path + ".lock")

    def delete(self) -> None:
        for lock in self.lock_files:
            if os.path.isfile(lock) and os.path.getsize(lock) == 0:
                os.unlink(lock)
        if not self.paths:
            return
        # Referrers first: delete derivation outputs before their .drv files and inputs.
        subprocess.run(
            ["nix-store", "--delete", *reversed(self.paths)],
            capture_output=True,
            check=False,
        )
