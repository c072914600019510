"""Stop a VM test where it is and let a person look at its fleet.

    from harness.interactive import pause

    @pytest.mark.fleet(PAIR)
    def test_upgrade(fleet):
        fleet["alpha"].succeed("...")
        pause(fleet)  # run with --keep-vms; attach from another terminal, Enter goes on

`pause` waits only when a person can answer: pytest runs with `--keep-vms` (the fleet's
consoles are reattachable), stdin is a terminal, and not in a pytest-xdist worker. Then it
lets go of the fleet's nodes, prints the `deploy-harness shell ...` commands, waits for Enter
and takes the nodes back (changes made meanwhile stay). Otherwise it does nothing and returns
False at once (without --keep-vms on a terminal it prints one line saying so), so a pause left
in a test never blocks CI.
"""
from __future__ import annotations

import sys

from . import keep
from .fleet import Fleet


def pause(fleet: Fleet, reason: str = "") -> bool:
    """Wait for Enter while the fleet is free to attach to. True if it waited."""
    from . import plugin

    config = plugin.active_config()
    if config is None or hasattr(config, "workerinput"):  # no person behind an xdist worker
        return False
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend(in_=True)  # the real terminal, as pytest's --pdb does
    try:
        if not sys.stdin.isatty():
            return False
        pool = plugin.fleet_pool_of(config)
        kept = pool.kept_fleet(fleet) if pool is not None else None
        if kept is None:
            print(
                "\n[vm] pause(): ignored. Start pytest with --keep-vms to attach to the fleet "
                "while a test is paused.",
                flush=True,
            )
            return False
        kept.let_go()
        why = f" ({reason})" if reason else ""
        print(f"\n[vm] paused{why}: the test waits.", flush=True)
        for line in keep.how_to_attach(kept.name, fleet.machines, fleet.state_dir):
            print(f"[vm]   {line}", flush=True)
        _wait_for_enter("[vm] Press Enter to go on with the test (detach your shells first). ")
        while True:
            try:
                kept.take_back()
                return True
            except keep.NodeBusy as busy:
                kept.let_go()
                _wait_for_enter(f"[vm] {busy}\n[vm] Press Enter when it is detached. ")
    finally:
        if capture is not None:
            capture.resume()


def _wait_for_enter(prompt: str) -> None:
    print(prompt, end="", flush=True)
    if not sys.stdin.readline():  # end of input: nobody will press Enter
        print()
