"""What the head would deploy, from the head tree's own ci/ scripts run for real: the hosts
(ci/determine-hosts with the host's nix), reboot decisions (ci/needs-reboot on toplevel-shaped
directories) and the deploy command (ci/deploy-plan)."""
from __future__ import annotations

import json

import pytest

from harness.twins import plan
from harness.twins.worktrees import RehearsalError, checked_out
from twins_testlib import flake

# A fleet at addresses and names of the test's choosing (none of them the real fleet's).
NODES = {"alpha-7": "10.91.3.17", "Zed_2": "fd00:91::5", "mid": "mid.twin.invalid"}


@pytest.fixture
def repo(fleet_repo):
    fleet_repo.commit("base", {"flake.nix": flake(NODES)})
    return fleet_repo


def test_the_hosts_are_the_head_s_deploy_nodes_at_any_names(repo, offline_nix, tmp_path):
    repo.commit("head: one host more", {"flake.nix": flake({**NODES, "new": "10.91.3.99"})})
    with checked_out(repo.path, "main~1", "main", parent=tmp_path) as trees:
        assert plan.deployable_hosts(trees.head.path) == sorted([*NODES, "new"])
        assert plan.deployable_hosts(trees.base.path) == sorted(NODES)


def test_a_head_whose_flake_does_not_evaluate_says_so(repo, offline_nix, tmp_path):
    repo.commit("head: broken", {"flake.nix": "{ outputs = { self }: { deploy = throw \"boom from head\"; }; }\n"})
    with checked_out(repo.path, "main~1", "main", parent=tmp_path) as trees:
        with pytest.raises(RehearsalError, match="ci/determine-hosts exited 1") as error:
            plan.deployable_hosts(trees.head.path)
    assert "boom from head" in str(error.value)


def test_select_hosts_keeps_the_deployable_order_and_refuses_unknown_names():
    assert plan.select_hosts(["a", "b", "c"], []) == ["a", "b", "c"]
    assert plan.select_hosts(["a", "b", "c"], ["c", "a"]) == ["a", "c"]
    with pytest.raises(RehearsalError, match="--host B: not a deployable host of the head") as error:
        plan.select_hosts(["a", "b"], ["B"])
    assert "deployable: a, b" in str(error.value)
    with pytest.raises(RehearsalError, match="no deployable hosts"):
        plan.select_hosts([], [])


@pytest.mark.parametrize("reboot, mode, boot_flag", [(False, "switch", False), (True, "boot", True)])
def test_the_deploy_command_is_the_head_s_deploy_plan_for_main(repo, tmp_path, reboot, mode, boot_flag):
    with checked_out(repo.path, "main", "main", parent=tmp_path) as trees:
        answer = plan.deploy_plan(trees.head.path, ["alpha-7", "mid"], reboot_needed=reboot)
    assert answer.mode == mode
    assert answer.hosts == ("alpha-7", "mid")
    assert ("--boot" in answer.argv) is boot_flag
    assert answer.argv[:2] == ("deploy", "--skip-checks") and answer.argv[-1] == "."
    assert answer.env == {}
    assert "deploy.nodes.alpha-7.profiles.system.path" in " ".join(answer.build)


def test_the_head_s_own_deploy_plan_runs_not_this_checkout_s(repo, tmp_path):
    changed = (repo.path / "ci" / "deploy-plan").read_text().replace(
        'deploy = ["deploy", "--skip-checks"]', 'deploy = ["deploy", "--skip-checks", "--confirm-timeout", "90"]')
    assert "--confirm-timeout" in changed
    repo.commit("head: a longer confirm timeout", {"ci/deploy-plan": changed})
    with checked_out(repo.path, "main~1", "main", parent=tmp_path) as trees:
        assert "--confirm-timeout" in plan.deploy_plan(trees.head.path, ["mid"], False).argv
        assert "--confirm-timeout" not in plan.deploy_plan(trees.base.path, ["mid"], False).argv


def test_a_head_whose_deploy_plan_refuses_is_an_error_with_its_words(repo, tmp_path):
    repo.commit("head: refuses", {"ci/deploy-plan": "import sys\nsys.exit('deploy-plan: refused by the head')\n"})
    with checked_out(repo.path, "main~1", "main", parent=tmp_path) as trees:
        with pytest.raises(RehearsalError, match="refused by the head"):
            plan.deploy_plan(trees.head.path, ["mid"], False)


def test_a_tree_without_ci_scripts_is_not_a_fleet_checkout(tmp_path):
    with pytest.raises(RehearsalError, match="has no ci/deploy-plan"):
        plan.deploy_plan(tmp_path, ["mid"], False)


def toplevel(root, name, kernel="6.6.1", initrd="a", modules="6.6.1"):
    """A directory shaped like a NixOS toplevel: kernel, initrd and kernel-modules links."""
    store = root / "store"
    top = root / name
    top.mkdir(parents=True)
    for link, target in (("kernel", f"linux-{kernel}/bzImage"), ("initrd", f"initrd-{initrd}/initrd"),
                         ("kernel-modules", f"modules-{modules}")):
        path = store / target
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.mkdir() if link == "kernel-modules" else path.write_text(link)
        (top / link).symlink_to(path)
    return top


def links_of(top):
    return {name: str((top / name).resolve()) for name in plan.BOOTED_LINKS}


@pytest.fixture
def head_tree(repo, tmp_path):
    with checked_out(repo.path, "main", "main", parent=tmp_path) as trees:
        yield trees.head.path


def test_same_kernel_initrd_and_modules_need_no_reboot(head_tree, tmp_path):
    booted = toplevel(tmp_path / "sys", "base")
    new = toplevel(tmp_path / "sys", "head")  # another toplevel, the same kernel, initrd, modules
    decision = plan.needs_reboot(head_tree, "mid", links_of(booted), str(new))
    assert decision == plan.RebootDecision("mid", False, "mid: kernel, initrd and kernel-modules unchanged")


@pytest.mark.parametrize("change", ["kernel", "initrd", "modules"])
def test_a_new_kernel_initrd_or_module_tree_needs_a_reboot(head_tree, tmp_path, change):
    booted = toplevel(tmp_path / "sys", "base")
    new = toplevel(tmp_path / "sys", "head", **{change: "7.0" if change != "initrd" else "b"})
    decision = plan.needs_reboot(head_tree, "mid", links_of(booted), str(new))
    assert decision.needed
    assert "changed" in decision.why and decision.host == "mid"


def test_a_link_missing_on_the_twin_means_reboot_needed(head_tree, tmp_path):
    booted = links_of(toplevel(tmp_path / "sys", "base"))
    booted["initrd"] = None
    decision = plan.needs_reboot(head_tree, "mid", booted, str(toplevel(tmp_path / "sys", "head")))
    assert decision.needed and "no initrd link" in decision.why


def test_a_head_toplevel_that_is_not_one_is_an_error(head_tree, tmp_path):
    booted = links_of(toplevel(tmp_path / "sys", "base"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RehearsalError, match="not a bootable NixOS"):
        plan.needs_reboot(head_tree, "mid", booted, str(tmp_path / "empty"))


def test_an_incomplete_reading_of_the_twin_is_refused(head_tree, tmp_path):
    with pytest.raises(RehearsalError, match="kernel-modules"):
        plan.needs_reboot(head_tree, "mid", {"kernel": "/k", "initrd": "/i"}, str(tmp_path))


def test_the_plan_json_is_what_deploy_plan_prints(repo, tmp_path):
    with checked_out(repo.path, "main", "main", parent=tmp_path) as trees:
        printed = json.loads(plan.run_script(trees.head.path, "deploy-plan", "--branch", "main",
                                             "--hosts-json", '["mid"]', "--reboot-needed", "true").stdout)
        answer = plan.deploy_plan(trees.head.path, ["mid"], True)
    assert list(answer.argv) == printed["argv"] and answer.command == printed["command"]
