"""What a node's transcript says about its backdoor shell (harness/cli/shell_history.py), read
from transcripts written by the engine's own Transcript class, entry by entry as a machine
writes them."""
from __future__ import annotations

from harness.cli import shell_history
from harness.cli.node_commands import run_wrapper
from harness.vm.console import Transcript
from harness.vm.shell_session import wrap


def transcript_of(tmp_path, *entries) -> shell_history.ShellState:
    path = tmp_path / "transcript.log"
    transcript = Transcript(path)
    for entry in entries:
        if isinstance(entry, str):
            transcript.note(entry)
        else:
            command, status = entry
            transcript.command(command, status, b"some output\nmore\n", 0.01)
    transcript.close()
    return shell_history.read(path)


def test_a_shell_that_answers_is_neither_ended_nor_busy(tmp_path):
    assert transcript_of(tmp_path, "starting run-alpha-vm", ("true", 0), ("false", 1)) == shell_history.ShellState()


def test_a_command_that_ended_the_shell_is_named_with_its_status(tmp_path):
    state = transcript_of(tmp_path, ("true", 0), (run_wrapper("/tmp/.ndh-stderr-0a1b2c3d4e5f", "kill -9 $$"),
                                                  "BACKDOOR SHELL EXITED 137"))
    assert state.busy is None
    assert (state.ended.command, state.ended.status) == ("kill -9 $$", 137)
    # Later commands that found no shell do not change who ended it.
    state = transcript_of(tmp_path, ("echo more", "NO BACKDOOR SHELL"), "detached (pid 1)", "attached (pid 2)")
    assert (state.ended.command, state.ended.status) == ("kill -9 $$", 137)


def test_a_restore_a_reboot_or_a_new_boot_brings_a_new_shell(tmp_path):
    for event in ("restored ndh-pristine", "reboot (ctrl-alt-delete)", "starting run-alpha-vm"):
        (tmp_path / "transcript.log").unlink(missing_ok=True)
        state = transcript_of(tmp_path, ("kill $$", "BACKDOOR SHELL EXITED 143"), event)
        assert state == shell_history.ShellState(), event
    assert transcript_of(tmp_path, ("reboot", "GUEST REBOOTED")) == shell_history.ShellState()


def test_the_first_command_still_running_is_the_busy_one_until_one_finishes(tmp_path):
    state = transcript_of(tmp_path, ("sleep 600", "TIMEOUT"), ("true", "TIMEOUT"))
    assert (state.busy.command, state.ended) == ("sleep 600", None)
    assert transcript_of(tmp_path, ("true", 0)).busy is None


def test_an_interrupted_run_leaves_its_command_named(tmp_path):
    state = transcript_of(tmp_path, f"{shell_history.LEFT_RUNNING}sleep 30; echo done")
    assert state.busy.command == "sleep 30; echo done"


def test_commands_show_as_typed_without_deploy_harness_wrappers(tmp_path):
    typed = "for i in 1 2; do\n  echo $i\ndone"
    state = transcript_of(tmp_path, (wrap(typed, "/root"), "TIMEOUT"))
    assert state.busy.command == typed
    assert shell_history.shown("echo plain") == "echo plain"
