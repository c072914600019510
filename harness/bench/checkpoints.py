"""Checkpoint benchmarks for `python -m harness.bench` (a 2-node micro fleet):

fleet2_restore_s      Fleet.restore() of the 2 nodes to usable shells (median of 5)
checkpoint_setup_s    the first Fleet.checkpoint() use: a setup of about 5 s of guest work on
                      both nodes (a busy loop, then files written), then the fleet's snapshot
checkpoint_reuse_s    a later use, after the fleet went back to pristine as for a new test
                      (median of 5); target: at most 1.5 x fleet2_restore_s
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

from .fleets import timed_restores
from ..fleet import PRISTINE, Fleet, FleetSpec, NodeSpec

REUSES = 5
# About 5 s of guest CPU per node, whatever the accelerator: the loop watches the clock.
WORK = "end=$(( $(date +%s) + 5 )); while [ $(date +%s) -lt $end ]; do :; done; seq 1 5000 > /root/work"


def checkpoint_figures(accel: str, workdir: Path, log: Callable[[str], None]) -> dict[str, object]:
    spec = FleetSpec("bench-cp2", {"alpha": NodeSpec(vlans=(1,)), "beta": NodeSpec(vlans=(1,))})
    fleet = Fleet(spec, accel=accel, base_dir=workdir / "cp2")
    result: dict[str, object] = {}
    try:
        log("2-node fleet: restores, then a checkpoint with 5 s of guest work, made and reused")
        fleet.boot()
        restores, _ = timed_restores(fleet)
        result["fleet2_restore_s"] = round(statistics.median(restores), 3)
        fleet.snapshot(PRISTINE)

        def setup(directory: Path) -> list:
            # Both nodes at once: alpha's share in the background, beta's in the foreground.
            fleet["alpha"].succeed(f"({WORK}; touch /root/done) >/dev/null 2>&1 &")
            fleet["beta"].succeed(WORK)
            fleet["alpha"].succeed("while [ ! -e /root/done ]; do sleep 0.1; done", timeout=120)
            return [node.succeed("wc -l < /root/work").strip() for node in fleet]

        started = time.monotonic()
        fleet.checkpoint("bench", setup)
        result["checkpoint_setup_s"] = round(time.monotonic() - started, 3)
        reuses = []
        for _ in range(REUSES):
            fleet.restore(PRISTINE)  # a new test starts pristine
            started = time.monotonic()
            fleet.checkpoint("bench", setup)
            reuses.append(time.monotonic() - started)
            fleet["beta"].succeed("test -s /root/work")
        result["checkpoint_reuse_s"] = round(statistics.median(reuses), 3)
        result["checkpoint_samples"] = {"fleet2_restore_s": restores, "checkpoint_reuse_s": reuses}
    finally:
        fleet.close()
    return result
