"""The base and head of a rehearsal as two detached git work trees of the same repository, in
a temporary directory that is removed, and unregistered from git, on every way out."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

GIT_TIMEOUT = 300


class RehearsalError(RuntimeError):
    """The rehearsal cannot go on; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Tree:
    """One side of the rehearsal: the ref as given, the commit it names, its work tree."""

    ref: str
    commit: str
    path: Path


@dataclass(frozen=True)
class Trees:
    base: Tree
    head: Tree


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RehearsalError("`git` was not found on PATH; the rehearsal checks out base and head with git") from None


def repository_root(start: Path) -> Path:
    """The top of the git work tree that holds `start`."""
    done = _git(start, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise RehearsalError(f"{start} is not inside a git repository ({done.stderr.strip()}); "
                             "run the rehearsal from a checkout of the fleet repository or pass --repo")
    return Path(done.stdout.strip())


def resolve(repo: Path, ref: str, what: str) -> str:
    """The full commit id `ref` names; a clear error for a ref that names no commit."""
    if not ref or ref.startswith("-"):
        raise RehearsalError(f"--{what} {ref!r} is not a git ref")
    done = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise RehearsalError(
            f"--{what} {ref!r} names no commit in {repo}; give a branch, tag or commit id that "
            f"exists there (fetch it first, e.g. `git fetch origin {ref}`)"
        )
    return done.stdout.strip()


def add(repo: Path, path: Path, commit: str) -> None:
    """A detached work tree of `commit` at `path`."""
    done = _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    if done.returncode != 0:
        raise RehearsalError(f"git worktree add of {commit[:12]} failed: {done.stderr.strip()}")


def remove(repo: Path, path: Path) -> None:
    """The work tree and git's record of it, whatever state it is in."""
    _git(repo, "worktree", "remove", "--force", "--force", str(path))


def registered(repo: Path) -> list[Path]:
    """The work trees git knows of in `repo` (`git worktree list`)."""
    done = _git(repo, "worktree", "list", "--porcelain")
    return [Path(line[len("worktree "):]) for line in done.stdout.splitlines() if line.startswith("worktree ")]


@contextlib.contextmanager
def checked_out(repo: Path, base_ref: str, head_ref: str, parent: Path | None = None) -> Iterator[Trees]:
    """Base and head checked out (detached) under a fresh `ndh-rehearse-*` directory.

    Both refs are resolved before anything is written, so a bad ref leaves nothing behind. The
    directory and git's record of both work trees go on every exit: return, error, Ctrl-C."""
    repo = repository_root(Path(repo))
    base_commit = resolve(repo, base_ref, "base")
    head_commit = resolve(repo, head_ref, "head")
    top = Path(tempfile.mkdtemp(prefix="ndh-rehearse-", dir=parent))
    added: list[Path] = []
    try:
        trees = []
        for side, ref, commit in (("base", base_ref, base_commit), ("head", head_ref, head_commit)):
            path = top / side
            add(repo, path, commit)
            added.append(path)
            trees.append(Tree(ref, commit, path))
        yield Trees(*trees)
    except BaseException:
        _clean(repo, top, added)  # the error in flight is what the caller must see
        raise
    problems = _clean(repo, top, added)
    if problems:
        raise RehearsalError("could not remove the rehearsal's work trees: " + "; ".join(problems))


def _clean(repo: Path, top: Path, added: list[Path]) -> list[str]:
    for path in added:
        remove(repo, path)
    shutil.rmtree(top, ignore_errors=True)
    _git(repo, "worktree", "prune")
    problems = [f"{top} is still there"] if top.exists() else []
    mine = {path.resolve() for path in added}
    left = [str(path) for path in registered(repo) if path.resolve() in mine]
    if left:
        problems.append(f"git still lists {', '.join(left)} (run `git worktree prune`)")
    return problems
