"""Stand-in twins for the rehearsal's orchestration tests, where no NixOS can be built.

Each twin is a directory laid out as a NixOS root (`NixosPaths.under(root)`), driven through
the host's bash (`support.HostShell`), so the rehearsal reads it with the real probes. A tree
describes each host's system in `twin/<host>.json` (kernel version, what its activation does);
"building" it makes a toplevel-shaped directory named by the hash of that description, as Nix
names by inputs. The plan's deploy command runs for real, with a stand-in `deploy` first on
PATH (standin_deploy.py) that does deploy-rs's part on these roots: a new generation, the
activation, rollback when activation fails or the canary cannot be confirmed. `systemctl` and
`journalctl` stand-ins print what the last activation left in the root. These stand-ins never
report a result: the rehearsal reads the roots."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

from harness.nixos import NixosPaths
from harness.twins.rehearse import DeployOutcome
from harness.twins.worktrees import Trees
from support import HostShell

HERE = Path(__file__).resolve().parent
TOOLS = {
    "deploy": f'exec {sys.executable} {HERE / "standin_deploy.py"} "$@"\n',
    "systemctl": 'cat "$TWIN_ROOT/run/failed-units" 2>/dev/null || true\n',
    # `-u UNIT`: the failed units' lines; `-t nixos`: the activations of this boot.
    "journalctl": 'case " $* " in *" -u "*) f=journal ;; *" -t nixos "*) f=activations ;; *) exit 2 ;; esac\n'
                  'cat "$TWIN_ROOT/run/$f" 2>/dev/null || true\n',
}


def describe(host: str, kernel: str = "6.6.1", behaviour: str = "ok", config: str = "v1") -> str:
    """The text of twin/<host>.json: behaviour is ok, unit-fails:<unit>, cuts-ssh or no-boot."""
    return json.dumps({"kernel": kernel, "behaviour": behaviour, "config": config}, sort_keys=True) + "\n"


def build(store: Path, tree: Path, host: str) -> Path:
    """The toplevel of `host` in `tree`: nixos-version, kernel, initrd, kernel-modules, behaviour."""
    text = (tree / "twin" / f"{host}.json").read_text()
    spec = json.loads(text)
    top = store / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}-nixos-system-{host}"
    if top.exists():
        return top
    kernel = store / f"linux-{spec['kernel']}"
    (kernel / "lib" / "modules").mkdir(parents=True, exist_ok=True)
    (kernel / "bzImage").write_text(spec["kernel"])
    initrd = store / f"initrd-{spec['kernel']}"
    initrd.mkdir(exist_ok=True)
    (initrd / "initrd").write_text(spec["kernel"])
    top.mkdir()
    (top / "nixos-version").write_text("24.11\n")
    (top / "kernel").symlink_to(kernel / "bzImage")
    (top / "initrd").symlink_to(initrd / "initrd")
    (top / "kernel-modules").symlink_to(kernel / "lib" / "modules")
    (top / "behaviour").write_text(spec["behaviour"])
    return top


class DirectoryTwins:
    def __init__(self, work: Path, trees: Trees, hosts: Sequence[str]) -> None:
        self.work, self.trees, self.hosts = work, trees, list(hosts)
        self.store = work / "store"
        self.bin = work / "bin"
        self.deploys: list[tuple[list[str], dict]] = []  # argv and env of each deploy run
        self.reboots: list[str] = []
        self.machines: dict[str, HostShell] = {}

    def root(self, host: str) -> Path:
        return self.work / "twins" / host

    def boot(self) -> None:
        self.bin.mkdir(parents=True)
        for name, body in TOOLS.items():
            (self.bin / name).write_text("#!/bin/bash\n" + body)
            (self.bin / name).chmod(0o755)
        for host in self.hosts:
            top = build(self.store, self.trees.base.path, host)
            paths = self.paths(host)
            Path(paths.profiles_dir).mkdir(parents=True)
            Path(paths.current_system).parent.mkdir(parents=True)
            Path(paths.profiles_dir, "system-1-link").symlink_to(top)
            Path(paths.profiles_dir, "system").symlink_to("system-1-link")
            Path(paths.booted_system).symlink_to(top)
            Path(paths.current_system).symlink_to(top)
            (self.root(host) / "run" / "sshd-listening").touch()
            env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                   "TWIN_ROOT": str(self.root(host))}
            self.machines[host] = HostShell(host, env=env)

    # -- the TwinFleet interface ------------------------------------------------------------

    def machine(self, host: str) -> HostShell:
        return self.machines[host]

    def paths(self, host: str) -> NixosPaths:
        return NixosPaths.under(str(self.root(host)))

    def head_system(self, host: str) -> str:
        return str(build(self.store, self.trees.head.path, host))

    def deploy(self, deploy_plan) -> DeployOutcome:
        env = {**os.environ, **deploy_plan.env, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
               "TWINS": json.dumps({h: str(self.root(h)) for h in self.hosts}),
               "TWIN_STORE": str(self.store)}
        self.deploys.append((list(deploy_plan.argv), dict(deploy_plan.env)))
        done = subprocess.run(list(deploy_plan.argv), cwd=self.trees.head.path, env=env,
                              capture_output=True, text=True, timeout=120)
        return DeployOutcome(done.returncode, done.stdout + done.stderr)

    def settle(self) -> None:
        pass  # the stand-in deploy rolls back before it returns

    def ssh_answers(self, host: str) -> bool:
        # A stand-in for a login: is the running system's sshd listening (its activation says)?
        status, _ = self.machines[host].execute(f"test -e {self.root(host)}/run/sshd-listening")
        return status == 0

    def reboot(self, host: str) -> None:
        """Boot the boot default: booted and current become the profile's system."""
        self.reboots.append(host)
        root = self.root(host)
        system = Path(os.path.realpath(Path(self.paths(host).profiles_dir, "system")))
        if (system / "behaviour").read_text() == "no-boot":
            raise TimeoutError(f"{host}: the twin did not come back after the reboot (stage 1 hangs)")
        from standin_deploy import activate, relink  # it imports this module

        relink(Path(self.paths(host).booted_system), system)
        (root / "run" / "activations").unlink(missing_ok=True)  # a new boot, a new journal
        activate(root, system)  # stage 2: the booted system's units start

    def close(self) -> None:
        for machine in self.machines.values():
            machine.cleanup()


def booter(work: Path, seen: list):
    """A `boot_twins` for harness.twins.rehearse: stand-in twins under `work`, kept in `seen`."""
    @contextlib.contextmanager
    def boot_twins(trees: Trees, hosts: Sequence[str]) -> Iterator[DirectoryTwins]:
        fleet = DirectoryTwins(work, trees, hosts)
        seen.append(fleet)
        fleet.boot()
        try:
            yield fleet
        finally:
            fleet.close()
    return boot_twins
