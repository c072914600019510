"""The rehearsal end to end on stand-in twins (standin_fleet.py): real git refs and work
trees, the head's real ci/ scripts (nix evaluates its deploy.nodes), the plan's deploy command
run as given, and every verdict read back from the twins by the real NixOS probes."""
from __future__ import annotations

import pytest

from harness.twins.observations import EXIT_OK, EXIT_WOULD_BREAK
from harness.twins.rehearse import rehearse
from harness.twins.worktrees import RehearsalError
from standin_fleet import booter, describe
from twins_testlib import flake

NODES = {"edge-1": "10.77.0.1", "db_two": "10.77.0.2"}


@pytest.fixture
def repo(fleet_repo, offline_nix):
    fleet_repo.commit("base", {"flake.nix": flake(NODES),
                               **{f"twin/{h}.json": describe(h) for h in NODES}})
    return fleet_repo


@pytest.fixture
def run(repo, tmp_path):
    fleets: list = []

    def go(head_files, hosts=()):
        repo.commit("head", head_files)
        report = rehearse(repo.path, "main~1", "main", list(hosts), booter(tmp_path / "work", fleets),
                          parent=tmp_path)
        assert not list(tmp_path.glob("ndh-rehearse-*")), "work trees left behind"
        return report, fleets[-1]
    return go


def by_host(report):
    return {result.host: result for result in report.hosts}


def test_a_harmless_change_passes_on_every_host_with_a_switch_and_a_reboot(run):
    report, fleet = run({"twin/edge-1.json": describe("edge-1", config="v2")})
    assert report.exit_status == EXIT_OK, report.markdown()
    assert report.mode == "switch" and report.command == "deploy --skip-checks ."
    assert fleet.deploys == [(["deploy", "--skip-checks", "."], {})]
    assert sorted(fleet.reboots) == sorted(NODES)
    edge = by_host(report)["edge-1"]
    assert edge.activated and edge.ssh_answers and edge.boots_head and not edge.rolled_back
    assert not edge.reboot_needed and edge.booted_system == edge.head_system
    assert "every host took the head" in report.markdown()


def test_an_activation_failure_breaks_that_host_only(run):
    report, _ = run({"twin/db_two.json": describe("db_two", behaviour="unit-fails:nginx.service")})
    assert report.exit_status == EXIT_WOULD_BREAK and report.breaking == ["db_two"]
    db = by_host(report)["db_two"]
    assert not db.activated and db.rolled_back and db.failed_units == ("nginx.service",)
    assert "Address in use" in db.journal_tail
    assert db.boots_head is False  # the rollback made the base the boot default again
    assert db.deploy_exit_status == 1
    assert not by_host(report)["edge-1"].breaks
    assert "| db_two | no | nginx.service | yes | yes | no | no | **breaks** |" in report.markdown()


def test_a_head_that_loses_ssh_is_rolled_back_and_reported(run):
    report, _ = run({"twin/edge-1.json": describe("edge-1", behaviour="cuts-ssh")})
    edge = by_host(report)["edge-1"]
    assert report.breaking == ["edge-1"]
    assert edge.rolled_back and not edge.activated
    assert edge.ssh_answers  # the rollback brought sshd back, as magic rollback does
    assert edge.failed_units == ()


def test_a_new_kernel_deploys_with_boot_and_the_twin_boots_it(run):
    report, fleet = run({"twin/edge-1.json": describe("edge-1", kernel="6.12.4")})
    assert report.exit_status == EXIT_OK, report.markdown()
    assert report.mode == "boot" and fleet.deploys[0][0] == ["deploy", "--skip-checks", "--boot", "."]
    edge, db = by_host(report)["edge-1"], by_host(report)["db_two"]
    assert edge.reboot_needed and "kernel changed" in edge.reboot_why
    assert not db.reboot_needed  # --boot is fleet-wide, the decision per host
    assert edge.activated and edge.boots_head and db.boots_head


def test_a_head_that_does_not_come_back_from_the_reboot_breaks(run):
    report, _ = run({"twin/edge-1.json": describe("edge-1", kernel="6.12.4", behaviour="no-boot")})
    edge = by_host(report)["edge-1"]
    assert report.breaking == ["edge-1"] and edge.activated and edge.boots_head is None
    assert "did not come back" in edge.notes[0]


def test_only_the_named_hosts_are_booted_and_deployed(run):
    report, fleet = run({"twin/db_two.json": describe("db_two", behaviour="unit-fails:x.service")}, hosts=["edge-1"])
    assert [r.host for r in report.hosts] == ["edge-1"] and fleet.hosts == ["edge-1"]
    assert report.exit_status == EXIT_OK


def test_an_unknown_host_fails_before_any_twin_boots(repo, tmp_path):
    repo.commit("head")
    fleets: list = []
    with pytest.raises(RehearsalError, match="--host nope: not a deployable host"):
        rehearse(repo.path, "main~1", "main", ["nope"], booter(tmp_path / "work", fleets), parent=tmp_path)
    assert fleets == [] and not list(tmp_path.glob("ndh-rehearse-*"))


def test_a_bad_ref_fails_before_anything(repo, tmp_path):
    fleets: list = []
    with pytest.raises(RehearsalError, match="--head 'pr/42' names no commit"):
        rehearse(repo.path, "main", "pr/42", [], booter(tmp_path / "work", fleets), parent=tmp_path)
    assert fleets == []


def test_work_trees_go_when_the_twins_fail_to_boot(repo, tmp_path):
    repo.commit("head")

    def broken(trees, hosts):
        assert trees.head.path.is_dir()
        raise RuntimeError("no KVM")
    with pytest.raises(RuntimeError, match="no KVM"):
        rehearse(repo.path, "main~1", "main", [], broken, parent=tmp_path)
    assert not list(tmp_path.glob("ndh-rehearse-*")) and repo.worktrees() == [str(repo.path)]


def test_a_deploy_that_never_reached_the_twins_is_not_activated_and_no_rollback(run, repo):
    # The head's own ci/deploy-plan drops --skip-checks: the stand-in deploy refuses to run,
    # as deploy-rs would fail its checks here, so no twin is touched.
    script = (repo.path / "ci" / "deploy-plan").read_text().replace(
        'deploy = ["deploy", "--skip-checks"]', 'deploy = ["deploy"]')
    report, fleet = run({"ci/deploy-plan": script, "twin/edge-1.json": describe("edge-1", config="v2")})
    assert fleet.deploys[0][0] == ["deploy", "."]
    edge = by_host(report)["edge-1"]
    assert edge.deploy_exit_status == 2 and not edge.activated and not edge.rolled_back
    assert edge.boots_head is False and report.breaking == ["edge-1"]


def test_a_host_new_in_the_head_is_named_as_not_rehearsed(run):
    report, fleet = run({"flake.nix": flake({**NODES, "fresh": "10.77.0.9"}), "twin/fresh.json": describe("fresh")})
    assert fleet.hosts == sorted(NODES, key=sorted([*NODES, "fresh"]).index)
    assert report.not_rehearsed == ("fresh",) and report.as_json()["not_rehearsed"] == ["fresh"]
    assert "Not rehearsed (new in the head, no base configuration to boot a twin from): fresh" in report.markdown()
    assert report.exit_status == EXIT_OK


def test_a_host_new_in_the_head_asked_for_by_name_is_an_error(repo, tmp_path):
    repo.commit("head", {"flake.nix": flake({**NODES, "fresh": "10.77.0.9"})})
    fleets: list = []
    with pytest.raises(RehearsalError, match="--host fresh: the base has no configuration of it"):
        rehearse(repo.path, "main~1", "main", ["fresh"], booter(tmp_path / "work", fleets), parent=tmp_path)
    assert fleets == []
