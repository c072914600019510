"""Real git repositories shaped like the fleet repository, for the rehearsal's tests: the real
`ci/` scripts of this checkout, and a flake without inputs (no nixpkgs here) whose deploy.nodes
names the hosts at whatever addresses a test gives them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CI_SCRIPTS = ("cilib.py", "deploy-plan", "determine-hosts", "needs-reboot")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "rehearsal test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "rehearsal test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}
# No substituter, flakes on: nothing these tests run may reach the network.
NIX_ENV = {"NIX_CONFIG": "experimental-features = nix-command flakes\nsubstituters =\n"}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def flake(nodes: dict[str, str]) -> str:
    """A flake with deploy.nodes {host: address} and a nixosConfiguration per host."""
    entries = " ".join(
        f'{name} = {{ hostname = {json.dumps(address)}; sshUser = "deploy"; profiles.system = {{}}; }};'
        for name, address in nodes.items()
    )
    configurations = " ".join(f"{name} = {{}};" for name in nodes)
    return ("{\n  outputs = { self }: {\n"
            f"    nixosConfigurations = {{ {configurations} }};\n"
            f"    deploy.nodes = {{ {entries} }};\n  }};\n}}\n")


class FleetRepo:
    """A git repository with ci/ and a flake; `commit` records a new state of files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        (path / "ci").mkdir()
        for name in CI_SCRIPTS:
            shutil.copy2(REPO / "ci" / name, path / "ci" / name)

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        for relative, text in (files or {}).items():
            self.write(relative, text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def worktrees(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in git(self.path, "worktree", "list", "--porcelain").splitlines()
                if line.startswith("worktree ")]
