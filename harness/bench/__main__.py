"""`python -m harness.bench`: the engine's speed on the micro image, as one JSON object.

cold_boot_s        Machine.start() of a fresh node to a usable shell (median of 3)
raw_cold_boot_s    the same image, devices and accelerator started by a bare QEMU command,
                   timed to the ready line on its console socket: the floor (median of 3,
                   interleaved with the above so both see the same machine load)
restore_s          Machine.restore() of a snapshot to a usable shell (median of 5)
restore_cpu_s      CPU seconds its QEMU spent per restore (mean of the 5)
snapshot_memory_mib  the guest memory that snapshot saved (QEMU's vm-state-size; 128 MiB guest)
cpu_cores          the CPUs this process may run on
disk_aio           how QEMU reads the snapshot drive (harness/vm/disk_aio.py), and why
succeed_true_*_ms  200 x succeed("true")
succeed_subshell_median_ms  200 x succeed("true; true"): the general path, which forks
output_10mb_s      time to return 10 MB of stdout
seq_100k_bare_s    succeed("seq 1 100000"): 100,000 short lines (median of 3, each on a freshly
                   restored guest); target: at most 1.5 x seq_100k_pipe_s, no machine lost
seq_100k_pipe_s    the same through `| cat` in the command itself (median of 3, as above)
xdist_speedup      harness/bench/suite (16 VM tests, two fleets) wall time with -n 1 divided by -n 2
console_floor_true_ms, console_floor_subshell_ms: the same two commands over the bare console,
                   no engine, of a second guest, sampled in rounds alternating with the two
                   above (harness/bench/console.py); targets: succeed_true_median_ms and
                   succeed_subshell_median_ms at most 1.5 x these
fleet4_restore_s, uefi_fleet_cold_boot_s, uefi_fleet_restore_s, kept_fleet_first_test_s:
                   fleets of micro nodes (harness/bench/fleets.py)
fleet2_restore_s, checkpoint_setup_s, checkpoint_reuse_s: checkpoints on a 2-node fleet
                   (harness/bench/checkpoints.py); target: checkpoint_reuse_s at most
                   1.5 x fleet2_restore_s
Progress goes to stderr; only the JSON goes to stdout.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import state_dirs
from ..accel import resolve
from ..images import micro
from ..vm import Machine, disk_aio, process
from ..vm.backdoor import READY_LINE
from ..vm.monitor import saved_memory
from . import checkpoints, console, fleets

BOOT_ROUNDS = 3


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def timed_cold_boot(image: micro.MicroImage, accel: str, workdir: Path) -> tuple[float, Machine]:
    node_dir = Path(tempfile.mkdtemp(prefix="cold-", dir=workdir))
    script = micro.write_start_script(node_dir, image, micro.MicroNode("bench", 1, ()))
    machine = Machine("bench", script, node_dir, accel=accel, snapshot_drive=micro.MICRO.snapshot_drive)
    started = time.monotonic()
    machine.start()
    machine.succeed("true")
    return time.monotonic() - started, machine


def timed_raw_boot(image: micro.MicroImage, accel: str, workdir: Path) -> float:
    """Bare QEMU, no start script and no engine: the same kernel, initrd, disk overlay and
    devices; timed from exec to the ready line arriving on its console socket."""
    node_dir = Path(tempfile.mkdtemp(prefix="raw-", dir=workdir))
    disk = node_dir / "raw.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.base_disk), str(disk)],
        check=True,
    )
    console_path = node_dir / "console"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(console_path))
    listener.listen(1)
    argv = ["qemu-system-x86_64", "-name", "raw", "-m", "128", "-smp", "1", "-nodefaults"]
    if image.bios:
        argv += ["-bios", str(image.bios)]
    argv += [
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", micro.kernel_params(micro.MicroNode("raw", 1, ())),
        "-drive", f"file={disk},if=none,id=disk0,format=qcow2,cache=writeback,werror=report",
        "-device", "virtio-blk-pci,drive=disk0",
        "-device", "virtio-net-pci,netdev=user.0", "-netdev", "user,id=user.0,restrict=on",
        "-chardev", f"socket,id=shell,path={console_path}",
        "-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
        "-device", "virtio-rng-pci", "-serial", "null", "-display", "none",
        "-accel", accel, "-no-reboot",
    ]
    started = time.monotonic()
    proc = process.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener.settimeout(120)
        conn, _ = listener.accept()
        conn.settimeout(120)
        received = b""
        while READY_LINE not in received:
            data = conn.recv(65536)
            if not data:
                raise RuntimeError("bare QEMU closed its console before the ready line")
            received += data
        elapsed = time.monotonic() - started
        conn.close()
        return elapsed
    finally:
        process.kill(proc)
        listener.close()


def command_latencies(machine: Machine, command: str, count: int = 200) -> list[float]:
    machine.succeed(command)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        machine.succeed(command)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def xdist_speedup() -> tuple[float, float, float]:
    suite = Path(__file__).with_name("suite")
    walls = []
    for workers in ("1", "2"):
        log(f"running the 16-test VM suite with -n {workers}")
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers, str(suite)],
            capture_output=True, text=True,
        )
        walls.append(time.monotonic() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"the bench suite failed with -n {workers}:\n{proc.stdout[-3000:]}")
    return walls[0] / walls[1], walls[0], walls[1]


def main() -> int:
    choice = resolve(os.environ.get("NDH_BENCH_ACCEL", "auto"))
    log(f"accel {choice.name}: {choice.reason}")
    image = micro.ensure_micro_image(log)
    workdir = state_dirs.make("bench")
    aio = disk_aio.choice()
    log(f"disk aio {aio.name}: {aio.reason}")
    result: dict[str, object] = {
        "accel": choice.name, "cpu_cores": fleets.cpu_cores(), "disk_aio": f"{aio.name}: {aio.reason}",
    }
    try:
        cold, raw = [], []
        machine = None
        for round_number in range(BOOT_ROUNDS):
            log(f"cold boot round {round_number + 1}/{BOOT_ROUNDS}")
            raw.append(timed_raw_boot(image, choice.name, workdir))
            seconds, booted = timed_cold_boot(image, choice.name, workdir)
            cold.append(seconds)
            if machine is not None:
                machine.crash()
            machine = booted
        assert machine is not None
        result["cold_boot_s"] = round(statistics.median(cold), 3)
        result["raw_cold_boot_s"] = round(statistics.median(raw), 3)

        # On the freshly booted guest, as the floor's guest is: like against like.
        log("200 x succeed('true'), 200 x succeed('true; true'), alternating with the bare console's floor")
        with console.bare_console(image, choice.name, workdir) as bare:
            samples = console.side_by_side(lambda command, count: command_latencies(machine, command, count), bare)
        fast = samples["succeed_true_ms"]
        result["succeed_true_median_ms"] = round(statistics.median(fast), 2)
        result["succeed_true_p95_ms"] = round(statistics.quantiles(fast, n=20)[18], 2)
        result["succeed_subshell_median_ms"] = round(statistics.median(samples["succeed_subshell_ms"]), 2)
        for key in ("console_floor_true_ms", "console_floor_subshell_ms"):
            result[key] = round(statistics.median(samples[key]), 2)

        log("snapshot and restores")
        machine.snapshot("bench")
        result["snapshot_memory_mib"] = round(saved_memory(machine.disk_image)["bench"] / (1 << 20), 1)
        restores, cpu = [], 0.0
        for _ in range(5):
            machine.succeed("echo dirty > /persist/dirty")
            cpu_before = fleets.cpu_seconds([machine])
            started = time.monotonic()
            machine.restore("bench")
            restores.append(time.monotonic() - started)
            cpu += fleets.cpu_seconds([machine]) - cpu_before
        machine.fail("test -e /persist/dirty")
        result["restore_s"] = round(statistics.median(restores), 3)
        result["restore_cpu_s"] = round(cpu / 5, 3)

        log("10 MB of output")
        started = time.monotonic()
        status, output = machine.execute_bytes("head -c 10000000 /dev/zero")
        result["output_10mb_s"] = round(time.monotonic() - started, 3)
        if status != 0 or len(output) != 10_000_000:
            raise RuntimeError(f"10 MB output came back as {len(output)} bytes, status {status}")

        log("seq 1 100000, bare and piped, each on a freshly restored guest")
        bare, piped = [], []
        for _ in range(3):
            for command, samples in (("seq 1 100000", bare), ("seq 1 100000 | cat", piped)):
                machine.restore("bench")
                started = time.monotonic()
                output = machine.succeed(command, timeout=300)
                samples.append(time.monotonic() - started)
                if not output.endswith("\n100000\n"):
                    raise RuntimeError(f"`{command}` came back incomplete ({len(output)} bytes)")
                machine.succeed("true", timeout=30)  # the machine still answers
        result["seq_100k_bare_s"] = round(statistics.median(bare), 3)
        result["seq_100k_pipe_s"] = round(statistics.median(piped), 3)
        machine.crash()

        restores = fleets.fleet_restores(choice.name, workdir, log)
        fleet_samples = restores.pop("fleet_samples")
        result.update(restores)
        result["kept_fleet_first_test_s"] = fleets.kept_fleet_first_test(choice.name, workdir, log)
        checkpoint = checkpoints.checkpoint_figures(choice.name, workdir, log)
        fleet_samples.update(checkpoint.pop("checkpoint_samples"))
        result.update(checkpoint)

        speedup, one, two = xdist_speedup()
        result["xdist_speedup"] = round(speedup, 2)
        result["xdist_wall_1_worker_s"] = round(one, 1)
        result["xdist_wall_2_workers_s"] = round(two, 1)
        result["samples"] = {
            "cold_boot_s": cold, "raw_cold_boot_s": raw, "restore_s": restores,
            "seq_100k_bare_s": bare, "seq_100k_pipe_s": piped, **fleet_samples,
        }
    finally:
        process.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
