"""Verdicts and exit statuses from host results, and the report as Markdown and JSON."""
from __future__ import annotations

import json

import pytest

from harness.twins.observations import EXIT_OK, EXIT_WOULD_BREAK, HostResult, exit_status
from harness.twins.report import Report

HEAD = "/nix/store/h" + "0" * 31 + "-nixos-system-mid-head"
BASE = "/nix/store/b" + "0" * 31 + "-nixos-system-mid-base"


def passing(host="mid", **changes):
    fields = dict(host=host, mode="switch", reboot_needed=False, activated=True, ssh_answers=True,
                  boots_head=True, booted_system=HEAD, head_system=HEAD, deploy_exit_status=0)
    fields.update(changes)
    return HostResult(**fields)


def test_a_host_that_took_the_head_passes():
    assert passing().problems == [] and not passing().breaks
    assert exit_status([passing(), passing("b")]) == EXIT_OK


@pytest.mark.parametrize("changes, reason", [
    ({"activated": False}, "not activated: the head's system is not running"),
    ({"activated": False, "mode": "boot"}, "not activated: the head's system is not the boot default"),
    ({"failed_units": ("nginx.service",)}, "failed units: nginx.service"),
    ({"ssh_answers": False}, "ssh as the deploy user does not answer"),
    ({"rolled_back": True}, "rolled back to the base's system"),
    ({"boots_head": None}, "not rebooted: whether it boots the head is unknown"),
    ({"boots_head": False, "booted_system": BASE}, f"after a reboot it runs {BASE}, not the head's system"),
])
def test_each_finding_alone_breaks_the_host(changes, reason):
    result = passing(**changes)
    assert result.problems == [reason]
    assert exit_status([passing("ok"), result]) == EXIT_WOULD_BREAK


def test_deploy_rs_s_exit_status_alone_decides_nothing():
    assert not passing(deploy_exit_status=1).breaks  # what it said; the twin is what counts


def test_no_host_rehearsed_is_not_a_pass():
    assert exit_status([]) == EXIT_WOULD_BREAK


def test_a_reboot_needed_is_reported_but_not_a_failure():
    assert not passing(reboot_needed=True, mode="boot").breaks


def report(*hosts, log="deploy-rs said things\n"):
    return Report(base_ref="main", base_commit="a" * 40, head_ref="renovate/nixpkgs", head_commit="b" * 40,
                  mode="switch", command="deploy --skip-checks .", hosts=tuple(hosts), deploy_log=log)


def test_the_markdown_has_one_row_per_host_and_the_verdict():
    text = report(passing("alpha"), passing("mid", failed_units=("nginx.service",),
                                            journal_tail="nginx: bind() failed\n")).markdown()
    assert "`main` (aaaaaaaaaaaa) → `renovate/nixpkgs` (bbbbbbbbbbbb): **would break: mid**" in text
    assert "| alpha | yes | none | yes | no | no | yes | ok |" in text
    assert "| mid | yes | nginx.service | yes | no | no | yes | **breaks** |" in text
    assert "### mid" in text and "nginx: bind() failed" in text
    assert "deploy --skip-checks ." in text and "deploy-rs said things" in text


def test_the_markdown_of_a_clean_rehearsal_says_so():
    text = report(passing("alpha")).markdown()
    assert "every host took the head" in text and "breaks" not in text.split("|---", 1)[1]


def test_json_and_markdown_are_written_and_agree(tmp_path):
    made = report(passing("alpha"), passing("mid", ssh_answers=False))
    markdown, data = made.write(tmp_path / "out")
    loaded = json.loads(data.read_text())
    assert loaded["breaking"] == ["mid"] and loaded["exit_status"] == EXIT_WOULD_BREAK == made.exit_status
    assert [h["host"] for h in loaded["hosts"]] == ["alpha", "mid"]
    assert loaded["hosts"][1]["problems"] == ["ssh as the deploy user does not answer"]
    assert loaded["head"] == {"ref": "renovate/nixpkgs", "commit": "b" * 40}
    assert markdown.read_text() == made.markdown()
