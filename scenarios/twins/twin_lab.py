"""Booted twins for the scenarios: deploys as the deploy workflow runs them (on the twins'
deployer, harness/twins/twin_fleet.py), variants of this checkout to deploy, and the state
probes the scenarios already use (harness/nixos.py). Every check reads the twins, never
deploy-rs's words."""
from __future__ import annotations

import contextlib
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from harness import cache, nixos
from harness.fleet import Fleet
from harness.images.nixos import REPO
from harness.twins import twin_fleet, worktrees
from harness.twins.fleet_spec import DEPLOYER, TwinFacts, twin_spec
from harness.twins.plan import DeployPlan
from harness.twins.rehearse import DeployOutcome
from scenario_fleet import parse_metrics

GUINEA_PIG = "Development"
CHECKPOINT = "twins-booted"
VARIANT_FILE = "/etc/ndh-twin-variant"
TEXTFILE = "/var/lib/prometheus-node-exporter-text/nixos_generation.prom"
# Where flake.nix gives every host its extra modules (lib/fleet-hosts.nix's `modules`).
MODULES_LINE = "modules = [ sops-nix.nixosModules.sops ];"


def variant_tree(parent: Path, label: str, extra: str = "") -> Path:
    """A git worktree of this checkout's HEAD whose hosts all carry `/etc/ndh-twin-variant` =
    `label` (and the module text `extra`): a system that differs from the booted one."""
    tree = parent / label
    worktrees.add(REPO, tree, "HEAD")
    flake = tree / "flake.nix"
    text = flake.read_text()
    if MODULES_LINE not in text:
        raise AssertionError(f"flake.nix no longer has `{MODULES_LINE}`: update twin_lab.variant_tree")
    module = f'({{ lib, ... }}: {{ environment.etc."ndh-twin-variant".text = "{label}"; {extra} }})'
    flake.write_text(text.replace(MODULES_LINE, f"modules = [ sops-nix.nixosModules.sops {module} ];"))
    subprocess.run(["git", "-C", str(tree), "add", "flake.nix"], check=True)
    return tree


class TwinLab:
    def __init__(self, fleet: Fleet, facts: Mapping[str, TwinFacts], hosts: Sequence[str], scratch: Path) -> None:
        self.fleet, self.facts, self.hosts, self.scratch = fleet, facts, list(hosts), scratch

    def __getitem__(self, host: str):
        return self.fleet[host]

    @property
    def deployable(self) -> list[str]:
        return [host for host in self.hosts if self.facts[host].deployable]

    def restore(self) -> None:
        self.fleet.restore(CHECKPOINT)

    def state(self, host: str) -> nixos.SystemState:
        return nixos.probe_system(self.fleet[host])

    def variant(self, host: str) -> str | None:
        status, text = self.fleet[host].execute(f"cat {VARIANT_FILE}")
        return text.strip() if status == 0 else None

    def on(self, tree: Path, hosts: Sequence[str] | None = None) -> twin_fleet.TwinsOnFleet:
        return twin_fleet.TwinsOnFleet(self.fleet, self.facts, tree, list(hosts or self.deployable))

    def deploy_main(self, tree: Path, *, boot: bool = False) -> DeployOutcome:
        argv = ("deploy", "--skip-checks", *(("--boot",) if boot else ()), ".")
        return self._deploy(tree, self.deployable, argv, {})

    def deploy_test(self, tree: Path, host: str = GUINEA_PIG) -> DeployOutcome:
        argv = ("deploy", "--skip-checks", f".#{host}.test", "--", "--impure")
        return self._deploy(tree, [host], argv, {"HOMELAB_DEPLOY_TEST_HOST": host})

    def _deploy(self, tree: Path, hosts: Sequence[str], argv: Sequence[str], env: dict) -> DeployOutcome:
        plan = DeployPlan(mode="boot" if "--boot" in argv else "switch", hosts=tuple(hosts), argv=tuple(argv),
                          env=env, build=(), command=shlex.join(argv), reason="scenario")
        fleet = self.on(tree, hosts)
        outcome = fleet.deploy(plan)
        fleet.settle()
        return outcome

    def ssh_answers(self, host: str) -> bool:
        return self.on(REPO, [host]).ssh_answers(host)

    def reboot(self, host: str) -> None:
        self.fleet[host].reboot()

    # -- the binary cache ---------------------------------------------------------------------

    def twin_system(self, tree: Path, host: str) -> str:
        """`host`'s twin system as `tree` configures it, built here."""
        return self.on(tree, [host]).head_system(host)

    def push_to_cache(self, cache_host: str, paths: Sequence[str]) -> None:
        """Onto the deployer (CI's runner has what it built), then into the cache twin's store as
        the build workflow's push-to-cache job does, unsigned. The twins' deployer logs in as the
        deploy user with the test deploy key: the real fleet's push identity is CI's."""
        twin_fleet.copy_to_deployer(self.fleet, paths)
        facts = self.facts[cache_host]
        cache.copy_to_cache(self.fleet[DEPLOYER], f"ssh-ng://{facts.ssh_user}@{facts.target_host}", paths,
                            unsigned=True, ssh_options=twin_fleet.SSH_OPTIONS, timeout=900)

    def closure_on_deployer(self, path: str) -> list[str]:
        return cache.closure(self.fleet[DEPLOYER], path)

    def invalid_paths(self, host: str, paths: Sequence[str]) -> set[str]:
        return cache.invalid_paths(self.fleet[host], paths)

    def cache_public_key(self, cache_host: str) -> str:
        """The public half of the key the cache twin signs with. Harmonia may be socket-activated,
        so its key unit may not have run yet: start it first."""
        machine = self.fleet[cache_host]
        machine.succeed("systemctl start homelab-harmonia-keygen.service", timeout=120)
        return machine.succeed(f"cat {shlex.quote(str(self.facts[cache_host].cache_public_key_file))}").strip()

    def exporter_metrics(self, host: str) -> dict[str, float]:
        status, text = self.fleet[host].execute(f"cat {TEXTFILE}")
        return parse_metrics(text) if status == 0 else {}


@contextlib.contextmanager
def boot_lab(facts: Mapping[str, TwinFacts], hosts: Sequence[str], accel: str,
             time_scale: float = 1.0) -> Iterator[TwinLab]:
    """`accel` as the plugin chose it; `time_scale` stretches the fleet's waits (slow guests)."""
    spec = twin_spec(facts, hosts, name="scenario-twins")
    fleet = Fleet(spec, accel=accel, boot_timeout=900, time_scale=time_scale)
    with tempfile.TemporaryDirectory(prefix="ndh-twin-trees-") as scratch:
        try:
            fleet.boot()
            twin_fleet.prepare(fleet, [node for node in spec.nodes if node != DEPLOYER])
            fleet.snapshot(CHECKPOINT)
            yield TwinLab(fleet, facts, [n for n in spec.nodes if n != DEPLOYER], Path(scratch))
        finally:
            fleet.close()
            for tree in Path(scratch).iterdir():
                worktrees.remove(REPO, tree)
