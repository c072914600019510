"""Base and head as git work trees of a real repository: checked out at the right commits,
removed (and unregistered) on every way out, and clear errors for refs that name nothing."""
from __future__ import annotations

import pytest

from harness.twins.worktrees import RehearsalError, checked_out, registered
from twins_testlib import git


@pytest.fixture
def two_commits(fleet_repo):
    base = fleet_repo.commit("base", {"hosts/Niko/version": "base\n"})
    git(fleet_repo.path, "tag", "v1")
    head = fleet_repo.commit("head", {"hosts/Niko/version": "head\n"})
    return fleet_repo, base, head


def leftovers(parent):
    return sorted(p.name for p in parent.glob("ndh-rehearse-*"))


def test_base_and_head_are_checked_out_detached_at_their_commits(two_commits, tmp_path):
    repo, base, head = two_commits
    with checked_out(repo.path, "v1", "main", parent=tmp_path) as trees:
        assert (trees.base.commit, trees.head.commit) == (base, head)
        assert (trees.base.ref, trees.head.ref) == ("v1", "main")
        assert (trees.base.path / "hosts/Niko/version").read_text() == "base\n"
        assert (trees.head.path / "hosts/Niko/version").read_text() == "head\n"
        assert git(trees.head.path, "rev-parse", "HEAD") == head
        listed = [str(p) for p in registered(repo.path)]
        assert str(trees.base.path) in listed and str(trees.head.path) in listed
        top = trees.base.path.parent
    assert not top.exists()
    assert repo.worktrees() == [str(repo.path)]
    # The user's checkout is untouched: same branch, same commit.
    assert git(repo.path, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_the_work_trees_are_detached_so_no_branch_is_held(two_commits, tmp_path):
    repo, _, _ = two_commits
    with checked_out(repo.path, "main", "main", parent=tmp_path) as trees:
        for tree in (trees.base, trees.head):
            assert git(tree.path, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
        # The branch is still free: the user could check it out elsewhere.
        git(repo.path, "checkout", "-q", "main")


def test_an_error_inside_goes_out_unchanged_and_nothing_is_left(two_commits, tmp_path):
    repo, _, _ = two_commits
    with pytest.raises(ZeroDivisionError):
        with checked_out(repo.path, "v1", "main", parent=tmp_path) as trees:
            (trees.head.path / "scratch").write_text("a file the rehearsal made")
            1 / 0
    assert leftovers(tmp_path) == []
    assert repo.worktrees() == [str(repo.path)]


def test_ctrl_c_inside_removes_them_too(two_commits, tmp_path):
    repo, _, _ = two_commits
    with pytest.raises(KeyboardInterrupt):
        with checked_out(repo.path, "v1", "main", parent=tmp_path):
            raise KeyboardInterrupt
    assert leftovers(tmp_path) == [] and repo.worktrees() == [str(repo.path)]


@pytest.mark.parametrize("side", ["base", "head"])
def test_a_ref_that_names_no_commit_is_a_clear_error_before_anything_is_made(two_commits, tmp_path, side):
    repo, _, _ = two_commits
    refs = {"base": "v1", "head": "main", side: "renovate/no-such-branch"}
    with pytest.raises(RehearsalError) as error:
        with checked_out(repo.path, refs["base"], refs["head"], parent=tmp_path):
            pytest.fail("must not get here")
    assert f"--{side} 'renovate/no-such-branch' names no commit" in str(error.value)
    assert "git fetch" in str(error.value)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "-h", ""])
def test_an_option_or_empty_string_is_not_taken_for_a_ref(two_commits, tmp_path, ref):
    repo, _, _ = two_commits
    with pytest.raises(RehearsalError, match="is not a git ref"):
        with checked_out(repo.path, ref, "main", parent=tmp_path):
            pass


def test_a_tree_of_a_blob_is_no_commit(two_commits, tmp_path):
    repo, _, _ = two_commits
    blob = git(repo.path, "rev-parse", "main:hosts/Niko/version")
    with pytest.raises(RehearsalError, match="names no commit"):
        with checked_out(repo.path, blob, "main", parent=tmp_path):
            pass


def test_outside_a_repository_it_says_so(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(RehearsalError, match="is not inside a git repository"):
        with checked_out(tmp_path / "plain", "main", "main", parent=tmp_path):
            pass


def test_from_a_subdirectory_the_repository_is_found(two_commits, tmp_path):
    repo, base, _ = two_commits
    with checked_out(repo.path / "hosts" / "Niko", "v1", "v1", parent=tmp_path) as trees:
        assert trees.base.commit == base
