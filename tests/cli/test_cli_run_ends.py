"""Every wait of `deploy-harness run` ends, and says what happened: a command that ends the
backdoor shell (also with SIGKILL, which no trap sees) fails at once; a command that outlives
its timeout, or is interrupted, is named as still running; the next attach says why the node
does not answer and which restore gets it going again. Real micro VMs."""
from __future__ import annotations

import json
import signal
import subprocess

import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from cli_testlib import DEPLOY_HARNESS, as_from_a_terminal

FLEET = "ends"
RESTORE = f"deploy-harness restore alpha ndh-pristine --fleet {FLEET}"


@pytest.fixture(scope="module")
def fleet(cli, tmp_path_factory):
    spec = tmp_path_factory.mktemp("spec") / "ends.json"
    spec.write_text(json.dumps({"name": FLEET, "nodes": {"alpha": {"vlans": []}}}))
    cli.up("--spec", str(spec))
    yield cli
    cli.ok("down", "--fleet", FLEET)


def run(cli, *words, timeout=120):
    return cli("run", "alpha", "--fleet", FLEET, *words, timeout=timeout)


def back_to_pristine(cli):
    cli.ok("restore", "alpha", "ndh-pristine", "--fleet", FLEET)
    assert run(cli, "echo", "back").stdout == "back\n"


def test_a_dash_dash_after_node_leaves_the_command_as_written(fleet):
    result = run(fleet, "--", "--version")
    assert result.returncode == 127  # the guest's bash ran `--version`: no such command
    assert "--version: command not found" in result.stderr


def test_a_command_that_kills_the_backdoor_shell_fails_at_once(fleet):
    result = run(fleet, "--", "kill -9 $$")
    assert result.returncode == 255
    assert "deploy-harness: `kill -9 $$` ended the backdoor shell of alpha: exited with status 137 " \
        "(SIGKILL). Nothing reads commands on alpha until a snapshot is restored" in result.stderr
    assert RESTORE in result.stderr and "(snapshots of alpha: ndh-pristine)" in result.stderr
    assert "goes on running" not in result.stderr
    # The next command is told why the node does not answer, and what to run.
    result = run(fleet, "true")
    assert result.returncode == 255
    assert "cannot attach to alpha: its backdoor shell ended with status 137 at " in result.stderr
    assert "while `kill -9 $$` ran, and no snapshot was restored since" in result.stderr
    assert RESTORE in result.stderr
    back_to_pristine(fleet)


def test_a_shell_line_that_kills_the_backdoor_shell_ends_the_session_at_once(fleet):
    result = fleet("shell", "alpha", "--fleet", FLEET, stdin="kill -9 $$\necho never\n", timeout=120)
    assert result.returncode == 1
    assert "`kill -9 $$` ended the backdoor shell of alpha: exited with status 137 (SIGKILL)" in result.stderr
    assert RESTORE in result.stderr and "never" not in result.stdout
    back_to_pristine(fleet)


def test_a_command_that_outlives_its_timeout_is_named_until_a_restore(fleet):
    result = run(fleet, "--timeout", "1", "--", "sleep 600")
    assert result.returncode == 124
    assert "`sleep 600` did not finish on alpha within 1 s" in result.stderr
    assert "most likely still running" in result.stderr and RESTORE in result.stderr
    result = run(fleet, "true")
    assert result.returncode == 255
    assert "cannot attach to alpha: it did not answer within 10 s; `sleep 600` (started " in result.stderr
    assert "has not finished there" in result.stderr and RESTORE in result.stderr
    back_to_pristine(fleet)


def test_an_interrupted_run_says_the_command_still_runs_and_how_to_stop_it(fleet):
    serial = fleet.fleets_dir / FLEET / "alpha" / "serial.log"
    command = "echo ndh-interrupt-me >/dev/ttyS0; sleep 600"
    child = subprocess.Popen(
        [str(DEPLOY_HARNESS), "run", "alpha", "--fleet", FLEET, "--", command], env=fleet.env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_from_a_terminal,
    )
    try:
        started = Retrying(stop=stop_after_delay(120), wait=wait_fixed(0.1), retry=retry_if_result(lambda seen: not seen))
        started(lambda: b"ndh-interrupt-me" in serial.read_bytes())
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == 130
    assert f"interrupted: `{command}` had not finished on alpha, and its backdoor shell had not ended" in stderr
    assert RESTORE in stderr
    result = run(fleet, "true")
    assert result.returncode == 255
    assert f"cannot attach to alpha: it did not answer within 10 s; `{command}` (started " in result.stderr
    back_to_pristine(fleet)
