"""A fleet whose machine QEMU cannot snapshot (here: a writable raw drive, as a NixOS UEFI node's
variable store) falls back to a cold boot from a fresh disk for that machine, says why, and
keeps snapshotting the others (harness/fleet.py; docs/nixos-facts.md). Real QEMU and micro VMs."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.fleet import PRISTINE, Fleet, FleetSpec, NodeSpec
from harness.images import micro
from harness.vm import MachineError


@dataclass(frozen=True)
class MicroWithRawVariables(micro.Micro):
    """The micro image, plus for some nodes a writable raw drive kept where qemu-vm.nix keeps a
    UEFI node's variables (<state>/<name>-efi-vars.fd), created when missing as nixpkgs does."""

    raw_nodes: tuple[str, ...] = ()

    def start_scripts(self, spec, state_dir: Path, progress) -> dict[str, Path]:
        image = micro.ensure_micro_image(progress)
        numbers, hosts = spec.node_numbers(), spec.addresses()
        scripts = {}
        for name, node in spec.nodes.items():
            inner = micro.write_start_script(
                state_dir / name / "micro",
                image,
                micro.MicroNode(name, numbers[name], node.vlans, hosts, node.memory_mb),
            )
            if name not in self.raw_nodes:
                scripts[name] = inner
                continue
            wrapper = state_dir / name / "bin" / f"run-{name}-vm"
            wrapper.parent.mkdir(parents=True)
            wrapper.write_text(
                "#!/bin/sh\nset -e\n"
                f'vars="$PWD/{name}-efi-vars.fd"\n'
                '[ -e "$vars" ] || truncate -s 1M "$vars"\n'
                f'exec {inner} -drive if=none,id=vars,format=raw,file="$vars" "$@"\n'
            )
            wrapper.chmod(0o755)
            scripts[name] = wrapper
        return scripts


@pytest.fixture
def fleet(tmp_path):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    said: list[str] = []
    spec = FleetSpec(
        "fallback",
        {"alpha": NodeSpec(vlans=()), "beta": NodeSpec(vlans=())},
        image=MicroWithRawVariables(raw_nodes=("beta",)),
    )
    booted = Fleet(spec, base_dir=tmp_path / "fleet", progress=said.append)
    booted.said = said
    try:
        booted.boot()
        yield booted
    finally:
        booted.close()


def test_unsnapshottable_machine_cold_boots_and_the_rest_restore(fleet):
    fleet.snapshot(PRISTINE)
    assert list(fleet.cold_boot) == ["beta"]
    assert "does not support snapshots" in fleet.cold_boot["beta"]
    assert fleet.snapshots_supported is False
    notes = [line for line in fleet.said if "cannot snapshot" in line]
    assert len(notes) == 1 and "beta" in notes[0] and "cold-boot" in notes[0]

    beta_pid = fleet["beta"].pid
    for node in ("alpha", "beta"):
        fleet[node].succeed("echo dirty > /persist/dirty")
    variables = fleet["beta"].state_dir / "beta-efi-vars.fd"
    variables.write_bytes(b"written by the guest")

    fleet.reset()
    for node in ("alpha", "beta"):
        fleet[node].fail("test -e /persist/dirty")
    assert fleet["beta"].pid != beta_pid, "beta was booted again"
    assert variables.stat().st_size == 1 << 20, "a cold boot starts from fresh UEFI variables"

    fleet.snapshot(PRISTINE)  # taken again by a later test run: no second notice
    assert len([line for line in fleet.said if "cannot snapshot" in line]) == 1

    # Any other snapshot of beta cannot fall back: it says why.
    with pytest.raises(MachineError, match="beta: cannot snapshot: .*does not support snapshots"):
        fleet.snapshot("mine")
    with pytest.raises(MachineError, match="beta: cannot restore 'mine'"):
        fleet.restore("mine")
