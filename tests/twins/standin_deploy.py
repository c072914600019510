"""Stand-in for deploy-rs's `deploy` on the stand-in twins (standin_fleet.py), run as the
plan's command: `deploy --skip-checks [--boot] .` in the head tree.

For each twin ($TWINS: host -> root) it does what deploy-rs and NixOS do to the machine's
state, in the order they do it (docs/deploy-rs-facts.md): `nix-env --set` (a new generation),
then for switch the activation (current-system; a unit that fails makes it exit 4; a system
whose sshd does not listen cannot confirm), and on failure the rollback: the new generation
deleted, the profile and the running system back to the previous one. --boot only sets the
profile (the boot default). It prints log lines, never a verdict the rehearsal could read."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from standin_fleet import build  # noqa: E402


def relink(link: Path, target: Path | str) -> None:
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def activate(root: Path, system: Path, fresh: bool = True) -> int:
    """switch-to-configuration switch on a stand-in root: its exit status."""
    run = root / "run"
    relink(run / "current-system", system)
    with open(run / "activations", "a") as log:  # what switch-to-configuration logs as `nixos`
        log.write(f"switching to system configuration {system}\n")
    if fresh:
        for name in ("failed-units", "journal"):
            (run / name).unlink(missing_ok=True)
    (run / "sshd-listening").touch()
    behaviour = (system / "behaviour").read_text()
    if behaviour == "cuts-ssh":
        (run / "sshd-listening").unlink()
    if behaviour.startswith("unit-fails:"):
        unit = behaviour.split(":", 1)[1]
        (run / "failed-units").write_text(f"{unit} loaded failed failed {unit}\n")
        (run / "journal").write_text(f"twin {unit}[4242]: bind() to 0.0.0.0:443 failed (98: Address in use)\n"
                                     f"twin systemd[1]: {unit}: Failed with result 'exit-code'.\n")
        return 4
    return 0


def main(argv: list[str]) -> int:
    if "--skip-checks" not in argv or argv[-1] != ".":
        print(f"standin deploy: unexpected arguments {argv}", file=sys.stderr)
        return 2
    boot = "--boot" in argv
    store = Path(os.environ["TWIN_STORE"])
    status = 0
    for host, root_text in json.loads(os.environ["TWINS"]).items():
        root = Path(root_text)
        profiles = root / "nix" / "var" / "nix" / "profiles"
        previous = int(re.fullmatch(r"system-(\d+)-link", os.readlink(profiles / "system"))[1])
        system = build(store, Path.cwd(), host)
        relink(profiles / f"system-{previous + 1}-link", system)
        relink(profiles / "system", f"system-{previous + 1}-link")
        print(f"[deploy] [INFO] Activating profile `system` for node `{host}`")
        if boot:
            print("[activate] [INFO] Success activating for next boot, done!")
            continue
        code = activate(root, system)
        if code == 0 and (root / "run" / "sshd-listening").exists():
            print("[deploy] [INFO] Deployment confirmed.")
            continue
        print(f"[activate] [ERROR] {'The activation script resulted in a bad exit code' if code else 'Failed to get activation confirmation'}")
        (profiles / f"system-{previous + 1}-link").unlink()
        relink(profiles / "system", f"system-{previous}-link")
        activate(root, Path(os.path.realpath(profiles / f"system-{previous}-link")), fresh=False)
        print(f"[deploy] [ERROR] Deployment to node {host} failed, rolled back to previous generation")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
