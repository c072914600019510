"""Which accelerator VMs use. `auto` runs real guest code under KVM once per host and falls back
to TCG when that fails: on some machines /dev/kvm exists but KVM aborts (an MSR assertion with
a full CPU model) or hangs at boot, so the device's presence proves nothing. The verdict is
cached per host, kernel and QEMU.

Two guests, so that any Linux with QEMU gets a real verdict (no Debian tools, no Nix needed):
first a boot sector under QEMU's own BIOS with `-cpu max`, the CPU model NixOS test nodes use
(harness/vm/bare_boot.py); then, where the micro image can be had, the micro image itself up
to its backdoor. The reason says which guest decided."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass

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
    if shutil.which("qemu-system-x86_64") is None:
        return AccelChoice("tcg", "auto: qemu-system-x86_64 is not on PATH (`nix develop`, or ci/bootstrap on "
                                  "Debian); KVM not probed")
    cache_file = cache_root() / f"accel-{_host_key()}.json"
    with locked(cache_file.with_suffix(".lock")):
        if cache_file.exists():
            cached = AccelChoice(**json.loads(cache_file.read_text()))
            return AccelChoice(cached.name, f"{cached.reason} (cached verdict)")
        choice, verdict = _probe()
        if verdict:  # only what a real KVM guest did is a verdict about this host
            cache_file.write_text(json.dumps(asdict(choice)))
        return choice


def _host_key() -> str:
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    raw = f"{platform.node()}|{platform.release()}|{qemu}"
    return "".join(c if c.isalnum() else "-" for c in raw)[:120]


def _probe() -> tuple[AccelChoice, bool]:
    """Run guest code under KVM; KVM counts only if the guest really ran. Returns the choice
    and whether it is a verdict about KVM (worth caching) or only a failed attempt."""
    from .vm.bare_boot import bare_boot

    bare = bare_boot("kvm", PROBE_TIMEOUT)
    if not bare.ran:
        control = bare_boot("tcg", PROBE_TIMEOUT)
        if not control.ran:  # QEMU itself cannot run the guest (no BIOS file, ...): not KVM's fault
            return AccelChoice("tcg", f"auto: KVM not decided: the probe's boot sector does not run "
                                      f"under TCG either ({control.symptom}); using TCG"), False
        return AccelChoice("tcg", f"auto: /dev/kvm exists but a KVM guest (a boot sector under QEMU's "
                                  f"BIOS, -cpu max) {bare.symptom}; using TCG"), True
    image_missing = _micro_image_missing()
    if image_missing is not None:
        return AccelChoice("kvm", f"auto: a KVM guest ran (boot sector under QEMU's BIOS, -cpu max; "
                                  f"micro image not tried: {image_missing})"), True
    return _probe_micro()


def _micro_image_missing() -> str | None:
    """Why the micro image cannot be had here, or None when it is ready (built if need be)."""
    from .images import micro

    reason = micro.missing_reason()  # none: the boot sector's verdict stands alone
    return reason.splitlines()[0] if reason else None


def _probe_micro() -> tuple[AccelChoice, bool]:
    """Boot the micro image under KVM up to its backdoor: the engine's own path."""
    from . import state_dirs
    from .fleet import Fleet, FleetSpec, NodeSpec  # the probe needs a real guest
    from .vm import MachineError

    spec = FleetSpec("kvm-probe", {"probe": NodeSpec(vlans=())})
    fleet = Fleet(spec, accel="kvm", boot_timeout=PROBE_TIMEOUT,
                  base_dir=state_dirs.make("kvm-probe"))
    try:
        fleet.boot()
        fleet["probe"].succeed("true")
        return AccelChoice("kvm", "auto: a KVM guest booted (boot sector, then the micro image)"), True
    except MachineError as exc:  # the guest itself failed under KVM: a verdict
        return AccelChoice("tcg", f"auto: /dev/kvm exists but a KVM guest {_symptom(exc)}; using TCG"), True
    except Exception as exc:
        return AccelChoice("tcg", f"auto: the KVM probe could not run ({exc}); using TCG"), False
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
