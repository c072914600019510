"""harness.deploy's log parser against log lines written from deploy-rs's source.

Each case runs on the plain and on the ANSI-coloured rendering (deploy-rs colours the level
through flexi_logger). The strings and their source files are in deploy_rs_logs.py.
"""

from __future__ import annotations

from collections.abc import Callable

import deploy_rs_logs as logs
import pytest

from harness.deploy import parse_deploy_log, strip_ansi

COLOUR = pytest.mark.parametrize("colour", [False, True], ids=["plain", "ansi"])


def _parse(render: Callable[[bool], str], colour: bool, exit_code: int, **kw):
    raw = render(colour)
    assert ("\x1b[" in raw) == colour  # the case really is (un)coloured
    return parse_deploy_log(raw, exit_code, **kw)


@COLOUR
def test_success_is_activated_and_confirmed(colour: bool) -> None:
    result = _parse(logs.success, colour, 0)
    assert result.ok
    assert result.built == (("target", "system"),)
    assert result.pushed == (("target", "system"),)
    assert result.activated == (("target", "system"),)
    assert result.confirmed == (("target", "system"),)
    assert result.rollback_claimed is None
    assert not result.activation_failed and not result.confirmation_failed
    assert result.errors == ()
    assert "\x1b" not in result.log
    assert "Deployment confirmed." in result.log


@COLOUR
def test_auto_rollback_is_claimed_as_auto(colour: bool) -> None:
    result = _parse(logs.auto_rollback, colour, 1)
    assert not result.ok
    assert result.rollback_claimed == "auto"
    assert result.rollback_claimed_node == "target"
    assert result.activation_failed and not result.confirmation_failed
    assert result.activated == () and result.confirmed == ()
    assert result.target_reported_deactivation
    assert result.errors[-1] == (
        "[deploy] Deployment to node target failed, rolled back to previous generation"
    )


@COLOUR
@pytest.mark.parametrize(
    "render", [logs.magic_rollback, logs.magic_rollback_confirm_error], ids=["recv", "confirm"]
)
def test_magic_rollback_is_claimed_as_magic(colour: bool, render) -> None:
    result = _parse(render, colour, 1)
    assert result.rollback_claimed == "magic"
    assert result.confirmation_failed
    assert not result.activation_failed  # the activation itself succeeded
    assert result.activated == (("target", "system"),)
    assert result.confirmed == ()


@COLOUR
def test_failure_without_rollback_claim(colour: bool) -> None:
    result = _parse(logs.failure_without_rollback, colour, 1)
    assert result.rollback_claimed is None
    assert result.deploy_failed_node == "target"
    assert result.activation_failed
    assert not result.target_reported_deactivation


@COLOUR
def test_push_failure(colour: bool) -> None:
    result = _parse(logs.push_failure, colour, 1)
    assert result.push_failed_node == "target"
    assert result.profiles == ()  # never got to activation
    assert result.rollback_claimed is None
    assert "lacks a valid signature" in result.log


@COLOUR
def test_boot_activates_for_next_boot_without_confirmation(colour: bool) -> None:
    result = _parse(logs.boot, colour, 0, mode="boot")
    assert result.mode == "boot"
    assert result.activated_for_next_boot == (("target", "system"),)
    assert result.activated == (("target", "system"),)
    assert result.confirmed == ()  # --boot has no magic rollback


@COLOUR
def test_dry_activate(colour: bool) -> None:
    result = _parse(logs.dry_activate, colour, 0, mode="dry-activate")
    assert result.dry_activate_completed
    assert result.profiles == ()  # deploy-rs names no profile when dry-activating
    assert result.activated == ()


@COLOUR
def test_multi_node_failure_names_the_failing_node(colour: bool) -> None:
    result = _parse(logs.two_nodes_second_rolled_back, colour, 1)
    assert result.built == (("alpha", "system"), ("beta", "system"))
    assert result.confirmed == (("alpha", "system"),)
    assert [p.node for p in result.profiles] == ["alpha", "beta"]
    assert result.profiles[1].activation_failed and not result.profiles[0].activation_failed
    assert result.rollback_claimed == "auto"
    assert result.rollback_claimed_node == "beta"


def test_success_lines_do_not_count_without_deploy_rs_prefix() -> None:
    # A user's unit printing deploy-rs-like text must not look like a confirmation.
    result = parse_deploy_log("echo Deployment confirmed.\nDeployment confirmed.\n", 0)
    assert result.confirmed == () and result.profiles == ()


def test_timeout_exit_code_is_flagged() -> None:
    assert parse_deploy_log("", 124).timed_out
    assert not parse_deploy_log("", 1).timed_out


def test_strip_ansi_removes_colour_and_cursor_codes() -> None:
    text = "\x1b[38;5;196mERROR\x1b[0m \x1b[1;31mbold\x1b[0m\x1b[2K\rdone\x1b]0;title\x07"
    assert strip_ansi(text) == "ERROR bolddone"


def test_summary_mentions_claim_and_errors() -> None:
    summary = parse_deploy_log(logs.auto_rollback(True), 1).summary()
    assert "rollback claimed: auto" in summary
    assert "rolled back to previous generation" in summary
