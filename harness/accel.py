"""Which accelerator VMs use. `auto` boots a real guest under KVM once per host and falls back
to TCG when that fails: on some machines /dev/kvm exists but KVM aborts or hangs at boot, so
the device's presence proves nothing. The verdict is cached per host, kernel and QEMU."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .images.cachedir import cache_root, locked

PROBE_TIMEOUT = 30


@dataclass(frozen=True)
class AccelChoice:
    name: str  # "kvm" or "tcg"
    reason: str


def resolve(requested: str) -> AccelChoice:
    if requested in ("kvm", "tcg"):
        return AccelChoice(requested, f"forced by --vm-accel={requested}")
    if requested != "auto":
        raise ValueError(f"--vm-accel must be auto, kvm or tcg, not {requested!r}")
    if not os.path.exists("/dev/kvm"):
        return AccelChoice("tcg", "auto: no /dev/kvm")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("tcg", "auto: /dev/kvm is not accessible to this user")
    cache_file = cache_root() / f"accel-{_host_key()}.json"
    with locked(cache_file.with_suffix(".lock")):
        if cache_file.exists():
            cached = AccelChoice(**json.loads(cache_file.read_text()))
            return AccelChoice(cached.name, f"{cached.reason} (cached verdict)")
        choice = _probe()
        cache_file.write_text(json.dumps(asdict(choice)))
        return choice


def _host_key() -> str:
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    raw = f"{platform.node()}|{platform.release()}|{qemu}"
    return "".join(c if c.isalnum() else "-" for c in raw)[:120]


def _probe() -> AccelChoice:
    """Boot the micro image under KVM; KVM counts only if the backdoor answers."""
    from .fleet import Fleet, FleetSpec, NodeSpec  # the probe needs a real guest

    spec = FleetSpec("kvm-probe", {"probe": NodeSpec(vlans=())})
    fleet = Fleet(spec, accel="kvm", boot_timeout=PROBE_TIMEOUT,
                  base_dir=Path(tempfile.mkdtemp(prefix="ndh-kvm-probe-")))
    try:
        fleet.boot()
        fleet["probe"].succeed("true")
        return AccelChoice("kvm", "auto: a KVM guest booted")
    except Exception as exc:  # any failure means: do not use KVM here
        return AccelChoice("tcg", f"auto: /dev/kvm exists but a KVM guest {_symptom(exc)}; using TCG")
    finally:
        fleet.close()


def _symptom(exc: Exception) -> str:
    text = str(exc)
    if "no answer within" in text or "did not connect within" in text:
        return f"hung at boot (no backdoor within {PROBE_TIMEOUT} s)"
    if "QEMU exited with status" in text:
        status = text.split("QEMU exited with status", 1)[1].split()[0]
        return f"failed to boot (QEMU exited with status {status})"
    return f"failed to boot ({text.splitlines()[0][:100]})"
