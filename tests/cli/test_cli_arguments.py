"""deploy-harness's command line, without VMs: `run`'s words after NODE (a `--` there ends
deploy-harness's options), its default timeout, and timeouts refused at parse time."""
from __future__ import annotations

import pytest

from harness.cli import HANDLERS, arguments
from harness.vm.guest import DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    "argv, command, timeout, fleet",
    [
        (["run", "alpha", "--", "--version"], ["--version"], DEFAULT_TIMEOUT, None),
        (["run", "alpha", "--timeout", "3", "--", "--version"], ["--version"], 3, None),
        (["run", "alpha", "--", "--", "x"], ["--", "x"], DEFAULT_TIMEOUT, None),
        (["run", "alpha", "echo", "--", "-n"], ["echo", "--", "-n"], DEFAULT_TIMEOUT, None),
        (["run", "--timeout", "5", "alpha", "--", "-x"], ["-x"], 5, None),
        (["run", "--", "alpha", "echo", "hi"], ["echo", "hi"], DEFAULT_TIMEOUT, None),
        (["--fleet", "f", "run", "alpha", "echo"], ["echo"], DEFAULT_TIMEOUT, "f"),
        (["run", "alpha", "--fleet", "g", "--time", "7", "ls", "--all"], ["ls", "--all"], 7, "g"),
        (["run", "alpha", "--timeout=2.5", "true"], ["true"], 2.5, None),
    ],
)
def test_run_takes_the_words_after_node_as_written(argv, command, timeout, fleet):
    args = arguments.parse(argv, HANDLERS)
    assert (args.node, args.cmd, args.timeout, args.fleet) == ("alpha", command, timeout, fleet)


def test_a_dash_dash_right_after_node_reaches_the_guest_not_the_option_parser(cli):
    # Without a fleet, the error is about the fleet: the words parsed, `--version` is the command.
    result = cli("run", "alpha", "--", "--version")
    assert result.returncode == 255
    assert "unrecognized" not in result.stderr
    assert "no fleet is running" in result.stderr


def test_run_has_a_default_timeout_and_says_so():
    assert arguments.parse(["run", "alpha", "true"], HANDLERS).timeout == DEFAULT_TIMEOUT
    assert f"default: {DEFAULT_TIMEOUT:g}" in arguments.parser(HANDLERS).format_help() + _run_help()


def _run_help() -> str:
    parser = arguments.parser(HANDLERS)
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices["run"].format_help()


@pytest.mark.parametrize("value", ["0", "-5", "-0.5", "nan", "inf", "soon"])
@pytest.mark.parametrize(
    "where, code",
    [
        (("up", "--boot-timeout", "{}"), 2),
        (("run", "--timeout", "{}", "alpha", "true"), 2),
        (("run", "alpha", "--timeout", "{}", "true"), 255),
    ],
)
def test_timeouts_that_are_not_positive_are_refused_before_anything_runs(cli, value, where, code):
    result = cli(*(word.format(value) for word in where))
    assert result.returncode == code, result.stderr
    assert f"must be a positive number of seconds, not {value!r}" in result.stderr
    assert not any(cli.fleets_dir.iterdir()), "nothing may be claimed or booted"


def test_a_negative_line_count_is_refused(cli):
    result = cli("logs", "alpha", "-n", "-3")
    assert result.returncode == 2
    assert "must be a number of lines (0 or more), not '-3'" in result.stderr
