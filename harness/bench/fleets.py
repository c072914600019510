"""Fleet benchmarks for `python -m harness.bench` (micro image):

fleet4_restore_s        Fleet.restore() of 4 BIOS nodes to usable shells (median of 5); target:
                        at most 2 x restore_s (one node)
fleet4_restore_cpu_s    CPU seconds the 4 QEMUs spent per fleet restore (mean of the 5)
fleet4_restore_floor_s  fleet4_restore_cpu_s / min(cpu_cores, 4): the least wall time the QEMUs'
                        work can take on this machine; where it is above 2 x restore_s, the target
                        is out of this machine's reach however the restore is scheduled
uefi_fleet_cold_boot_s  Fleet.boot() of 4 nodes booted through OVMF, qcow2 EFI variables, to
                        usable shells (one boot)
uefi_fleet_restore_s    Fleet.restore() of those 4 nodes to usable shells (median of 5); target:
                        at most 0.1 x uefi_fleet_cold_boot_s
kept_fleet_first_test_s a pytest run with --reuse-fleet against a kept 2-node fleet
                        (`deploy-harness up`): start of pytest to the end of its first test
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

from ..fleet import Fleet, FleetSpec, NodeSpec
from ..images import micro

RESTORES = 5


def _four(name: str, image, memory_mb: int) -> FleetSpec:
    nodes = {f"n{number}": NodeSpec(vlans=(1,), memory_mb=memory_mb) for number in range(1, 5)}
    return FleetSpec(name, nodes, image=image)


def cpu_seconds(machines) -> float:
    """CPU time (user + system) the machines' QEMU processes have used so far (QEMU only: not
    the harness, not the switches)."""
    pids = [machine.pid for machine in machines]
    if None in pids:
        raise RuntimeError("a bench machine is not running: no CPU time to read")
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0))


def timed_restores(fleet: Fleet) -> tuple[list[float], float]:
    """Wall time of each restore, and the QEMUs' mean CPU seconds per restore."""
    fleet.snapshot("bench")
    samples, cpu = [], 0.0
    for _ in range(RESTORES):
        for machine in fleet:
            machine.succeed("echo dirty > /persist/dirty")
        cpu_before = cpu_seconds(fleet)
        started = time.monotonic()
        fleet.restore("bench")
        samples.append(time.monotonic() - started)
        cpu += cpu_seconds(fleet) - cpu_before
    for machine in fleet:
        machine.fail("test -e /persist/dirty")
    return samples, cpu / RESTORES


def fleet_restores(accel: str, workdir: Path, log: Callable[[str], None]) -> dict[str, object]:
    result: dict[str, object] = {}
    samples: dict[str, object] = {}
    log("4-node BIOS fleet: snapshot and restores")
    fleet = Fleet(_four("bench-fleet4", None, 128), accel=accel, base_dir=workdir / "fleet4")
    try:
        fleet.boot()
        samples["fleet4_restore_s"], cpu = timed_restores(fleet)
    finally:
        fleet.close()
    result["fleet4_restore_s"] = round(statistics.median(samples["fleet4_restore_s"]), 3)
    result["fleet4_restore_cpu_s"] = round(cpu, 3)
    result["fleet4_restore_floor_s"] = round(cpu / min(cpu_cores(), 4), 3)

    log("4-node UEFI fleet (OVMF, qcow2 variables): cold boot, snapshot and restores")
    fleet = Fleet(_four("bench-uefi4", micro.MICRO_UEFI, 256), accel=accel, base_dir=workdir / "uefi4")
    try:
        started = time.monotonic()
        fleet.boot()
        for machine in fleet:
            machine.succeed("test -d /sys/firmware/efi/efivars")
        result["uefi_fleet_cold_boot_s"] = round(time.monotonic() - started, 3)
        samples["uefi_fleet_restore_s"], _ = timed_restores(fleet)
    finally:
        fleet.close()
    result["uefi_fleet_restore_s"] = round(statistics.median(samples["uefi_fleet_restore_s"]), 3)
    result["fleet_samples"] = samples
    return result


FIRST_TEST = '''
import pathlib, time
import pytest
from harness.fleet_specs import MICRO


@pytest.mark.fleet(MICRO)
def test_first(fleet):
    fleet["alpha"].succeed("ping -c 1 -W 5 beta")
    pathlib.Path("first-test-ended").write_text(repr(time.time()))
'''


def kept_fleet_first_test(accel: str, workdir: Path, log: Callable[[str], None]) -> float:
    """`deploy-harness up` a 2-node fleet, then time a pytest run against it."""
    fleets_dir = Path(tempfile.mkdtemp(prefix="kept-", dir=workdir))
    env = dict(os.environ, NDH_FLEETS_DIR=str(fleets_dir))
    cli = [sys.executable, "-m", "harness.cli"]
    log("kept 2-node fleet: deploy-harness up, then pytest --reuse-fleet")
    subprocess.run([*cli, "up", "--accel", accel, "--name", "bench-kept"], env=env, check=True,
                   capture_output=True, text=True, timeout=600)
    try:
        (fleets_dir / "test_first.py").write_text(FIRST_TEST)
        started = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--vm-accel={accel}",
             "--reuse-fleet", "bench-kept", "test_first.py"],
            cwd=fleets_dir, env=env, capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0 or "reusing kept fleet bench-kept" not in proc.stdout:
            raise RuntimeError(f"the run against the kept fleet failed:\n{proc.stdout[-3000:]}")
        return round(float((fleets_dir / "first-test-ended").read_text()) - started, 3)
    finally:
        subprocess.run([*cli, "down", "--fleet", "bench-kept"], env=env, capture_output=True, timeout=120)
