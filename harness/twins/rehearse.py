"""The rehearsal: check out base and head, boot twins as the base configures them, deploy the
head exactly as the deploy workflow would on main, reboot, and report per host.

The twins come from a `TwinFleet` factory, so the same steps run on NixOS twins (the fleet's
own configurations in VMs, docs/twins.md) and, in the self-tests, on stand-in machines. Every
verdict is read from the machines (harness/twins/observe.py), never from deploy-rs's output."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Protocol, Sequence

from harness.nixos import NixosPaths, probe_system
from harness.vm.guest import ShellMachine

from . import observe, plan
from .observations import HostResult
from .report import Report
from .worktrees import RehearsalError, Trees, checked_out


@dataclass(frozen=True)
class DeployOutcome:
    """What running the plan's deploy command gave: its exit status and its output."""

    exit_status: int
    log: str


class TwinFleet(Protocol):
    """Twins of `hosts`, booted from the base tree's configurations, and a deployer that
    reaches each at the address the head's deploy.nodes gives it."""

    def machine(self, host: str) -> ShellMachine:
        """The twin's root shell (the backdoor), for the probes."""

    def paths(self, host: str) -> NixosPaths:
        """Where the twin keeps its NixOS state (NixosPaths() on a real twin)."""

    def head_system(self, host: str) -> str:
        """The head's toplevel for `host`, built, valid on this machine and on the twin."""

    def deploy(self, deploy_plan: plan.DeployPlan) -> DeployOutcome:
        """Run `deploy_plan.argv` with `deploy_plan.env` in the head tree's flake, as the
        deploy workflow runs it (deploy-rs, magic rollback as deploy.nodes arms it). The argv
        names the whole flake (`.`), as on main: the flake it runs in must have deploy.nodes for
        exactly the booted twins (with --host, a subset of the head's hosts)."""

    def settle(self) -> None:
        """Return once every twin has had its confirm timeout to roll itself back."""

    def ssh_answers(self, host: str) -> bool:
        """A login as the deploy user, from the deployer, ran `true`."""

    def reboot(self, host: str) -> None:
        """Reboot the twin and return when its shell answers again."""


# (trees, hosts) -> a context manager that boots the twins and ends them.
BootTwins = Callable[[Trees, Sequence[str]], ContextManager[TwinFleet]]


def rehearse(repo: Path, base_ref: str, head_ref: str, requested: Sequence[str], boot_twins: BootTwins,
             *, parent: Path | None = None, progress: Callable[[str], None] = lambda _: None) -> Report:
    with checked_out(repo, base_ref, head_ref, parent) as trees:
        head = trees.head.path
        hosts = plan.select_hosts(plan.deployable_hosts(head), requested)
        new = plan.without_base(hosts, plan.configured_hosts(trees.base.path), requested)
        hosts = [host for host in hosts if host not in new]
        if not hosts:
            raise RehearsalError("every host to rehearse is new in the head: there is no base to boot twins from")
        progress(f"rehearsing {', '.join(hosts)}: {trees.base.commit[:12]} -> {trees.head.commit[:12]}")
        with boot_twins(trees, hosts) as fleet:
            return dataclasses.replace(_run(trees, hosts, fleet, progress), not_rehearsed=tuple(new))


def _run(trees: Trees, hosts: Sequence[str], fleet: TwinFleet, progress: Callable[[str], None]) -> Report:
    head = trees.head.path
    machines = {host: fleet.machine(host) for host in hosts}
    before = {host: probe_system(machines[host], fleet.paths(host)) for host in hosts}
    systems = {host: fleet.head_system(host) for host in hosts}
    decisions = {
        host: plan.needs_reboot(head, host, observe.booted_links(machines[host], fleet.paths(host)), systems[host])
        for host in hosts
    }
    deploy_plan = plan.deploy_plan(head, hosts, any(d.needed for d in decisions.values()))
    progress(f"deploying: {deploy_plan.command}")
    outcome = fleet.deploy(deploy_plan)
    fleet.settle()
    results = {}
    for host in hosts:
        machine = machines[host]
        seen = observe.activation(machine, before[host], systems[host], deploy_plan.mode, fleet.paths(host))
        results[host] = dict(
            host=host, mode=deploy_plan.mode, reboot_needed=decisions[host].needed,
            reboot_why=decisions[host].why, activated=seen.activated, failed_units=seen.failed_units,
            journal_tail=seen.journal_tail, ssh_answers=fleet.ssh_answers(host), rolled_back=seen.rolled_back,
            head_system=systems[host], deploy_exit_status=outcome.exit_status,
        )
    for host in hosts:
        progress(f"rebooting {host}")
        try:
            fleet.reboot(host)
            booted = observe.booted_system(machines[host], fleet.paths(host))
        except Exception as error:  # the twin did not come back: that is the finding
            results[host].update(boots_head=None, notes=(f"reboot: {type(error).__name__}: {error}",))
            continue
        results[host].update(boots_head=booted == systems[host], booted_system=booted)
    return Report(
        base_ref=trees.base.ref, base_commit=trees.base.commit, head_ref=trees.head.ref,
        head_commit=trees.head.commit, mode=deploy_plan.mode, command=deploy_plan.command,
        hosts=tuple(HostResult(**results[host]) for host in hosts), deploy_log=outcome.log,
    )
