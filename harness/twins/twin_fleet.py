"""Booted twins (docs/twins.md, "Booting twins"): what the harness does to a twin after it
boots, and the `TwinFleet` of harness/twins/rehearse.py on top of a booted twin fleet.

After boot, each twin gets the fleet's TEST ONLY host key over the backdoor (never through Nix,
so it is in no store) and re-runs its activation, so that sops-nix decrypts its test secrets.
Deploys run on the twins' deployer, in a small flake whose `deploy.nodes` are the head's
`twinDeploy` nodes of the booted twins (lib/twin-deploy.nix): the plan's own argv, `.` included,
runs there unchanged. The head's flake, its inputs and the twins' profiles reach the deployer's
store by `nix copy` as root with the test deploy key, through the port QEMU forwards to its sshd;
nothing is fetched from any network."""
from __future__ import annotations

import base64
import contextlib
import json
import shlex
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .. import accel as accel_mod
from .. import nix
from ..deploy import DeployError, DeployOptions, run_deploy_argv
from ..fleet import Fleet
from ..nixos import NixosPaths
from ..vm.guest import ShellMachine
from .fleet_spec import DEPLOYER, TwinFacts, read_facts, twin_spec
from .plan import DeployPlan
from .rehearse import BootTwins, DeployOutcome
from .worktrees import RehearsalError, Trees

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "test" / "fleet" / "keys"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
ACTIVATE = "/run/current-system/activate"
DEPLOY_KEY = KEYS / "twin-deploy-ed25519"
DEPLOYER_FLAKE_DIR = "/root/twin-deploy"
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
DEPLOY_TIMEOUT = 1800.0
# How long past a twin's confirm timeout settle() waits for deploy-rs's activation to end.
SETTLE_MARGIN = 60.0


# -- after boot: the test host key, then activation again --------------------------------------


def host_key_commands(keys: Path = KEYS, key_path: str = HOST_KEY) -> list[str]:
    """Shell lines that write the test host key pair to `key_path` (and `.pub`), atomically."""
    lines = []
    for name, mode, path in (("target-host-ed25519", "0600", key_path), ("target-host-ed25519.pub", "0644", f"{key_path}.pub")):
        data = base64.b64encode((keys / name).read_bytes()).decode()
        q = shlex.quote(path)
        lines.append(f"printf %s {data} | base64 -d > {q}.new && chmod {mode} {q}.new && mv {q}.new {q}")
    return lines


def install_test_host_key(machine: ShellMachine, *, keys: Path = KEYS, key_path: str = HOST_KEY,
                          activate: str = ACTIVATE) -> None:
    """Write the key, then re-run activation (sops-nix's install-secrets reads the key there)."""
    for line in host_key_commands(keys, key_path):
        machine.succeed(line)
    machine.succeed(activate, timeout=300)


def prepare(fleet: Fleet, hosts: Sequence[str]) -> None:
    for host in hosts:
        install_test_host_key(fleet[host])


# -- the deployer's flake -------------------------------------------------------------------------


def deployer_flake_text(fleet_source: str, hosts: Sequence[str]) -> str:
    """A flake whose deploy.nodes are the fleet's twinDeploy nodes of `hosts` only."""
    wanted = " ".join(f"{json.dumps(h)} = null;" for h in sorted(hosts))
    return (
        "{\n"
        f"  inputs.fleet.url = {json.dumps('path:' + fleet_source)};\n"
        "  outputs = { fleet, ... }: {\n"
        f"    deploy.nodes = builtins.intersectAttrs {{ {wanted} }} fleet.twinDeploy.nodes;\n"
        "  };\n"
        "}\n"
    )


def ssh_answers_command(target_host: str, user: str) -> str:
    return shlex.join(["ssh", *SSH_OPTIONS, f"{user}@{target_host}", "true"])


def still_activating_command() -> str:
    """Succeeds while deploy-rs's activation (activate-rs, waiting for its confirmation) runs."""
    # No pgrep needed; the bracket keeps grep from finding its own command line.
    return "grep -qs '[a]ctivate-rs' /proc/[0-9]*/cmdline"


class TwinsOnFleet:
    """The rehearsal's TwinFleet over a booted twin fleet (twins + deployer)."""

    def __init__(self, fleet: Fleet, facts: Mapping[str, TwinFacts], head: Path, hosts: Sequence[str]) -> None:
        self.fleet, self.facts, self.head, self.hosts = fleet, facts, head, list(hosts)
        self._systems: dict[str, str] = {}

    def machine(self, host: str) -> ShellMachine:
        return self.fleet[host]

    def paths(self, host: str) -> NixosPaths:
        return NixosPaths()

    def head_system(self, host: str) -> str:
        if host not in self._systems:
            attribute = f"{self.head}#nixosConfigurations.{host}.config.virtualisation.vmVariant.system.build.toplevel"
            try:
                [self._systems[host]] = nix.build([attribute], options=nix.OFFLINE_OPTIONS)
            except nix.NixError as exc:
                raise RehearsalError(f"cannot build the head's twin system of {host}: {exc.excerpt}") from exc
        return self._systems[host]

    def deploy(self, deploy_plan: DeployPlan) -> DeployOutcome:
        source = self._copy_to_deployer(deploy_plan)
        deployer = self.fleet[DEPLOYER]
        flake = deployer_flake_text(source, self.hosts)
        encoded = base64.b64encode(flake.encode()).decode()
        directory = shlex.quote(DEPLOYER_FLAKE_DIR)
        deployer.succeed(f"rm -rf {directory} && mkdir -p {directory} && printf %s {encoded} | base64 -d > {directory}/flake.nix",
                         f"cd {directory} && nix flake lock --offline")
        try:
            result = run_deploy_argv(deployer, deploy_plan.argv, DeployOptions(env=dict(deploy_plan.env)),
                                     deploy_plan.mode, workdir=DEPLOYER_FLAKE_DIR, timeout=DEPLOY_TIMEOUT)
        except DeployError as exc:
            raise RehearsalError(f"the deploy could not run on the twins' deployer: {exc}") from exc
        return DeployOutcome(result.exit_code, result.log)

    def _copy_to_deployer(self, deploy_plan: DeployPlan) -> str:
        """The head's flake and inputs (`nix flake archive`) and every profile the plan deploys
        into the deployer's store; returns the flake's store path."""
        try:
            archived = json.loads(nix.run_nix(["flake", "archive", "--json", "--to", _DEPLOYER_STORE,
                                               str(self.head), *nix.option_args(nix.OFFLINE_OPTIONS)], env=_deployer_ssh(self.fleet)))
            profiles = [self._profile(host, deploy_plan) for host in self.hosts]
            copy_to_deployer(self.fleet, profiles)
        except nix.NixError as exc:
            raise RehearsalError(f"cannot copy the head to the twins' deployer: {exc.excerpt}") from exc
        return archived["path"]

    def _profile(self, host: str, deploy_plan: DeployPlan) -> str:
        test_host = deploy_plan.env.get("HOMELAB_DEPLOY_TEST_HOST", "")
        profile = "test" if test_host else "system"
        attribute = f"{self.head}#twinDeploy.nodes.{host}.profiles.{profile}.path"
        [path] = nix.build([attribute], options=nix.OFFLINE_OPTIONS, extra_args=["--impure"] if test_host else [],
                           env={"HOMELAB_DEPLOY_TEST_HOST": test_host} if test_host else None)
        return path

    def settle(self) -> None:
        for host in self.hosts:
            limit = self.facts[host].confirm_timeout + SETTLE_MARGIN
            self.fleet[host].wait_until_fails(still_activating_command(), timeout=limit)

    def ssh_answers(self, host: str) -> bool:
        facts = self.facts[host]
        status, _ = self.fleet[DEPLOYER].execute(ssh_answers_command(facts.target_host, facts.ssh_user), timeout=60)
        return status == 0

    def reboot(self, host: str) -> None:
        self.fleet[host].reboot()


# -- the deployer's store and the cache twin's ------------------------------------------------------

_DEPLOYER_STORE = f"ssh-ng://root@127.0.0.1?ssh-key={DEPLOY_KEY}"
# What the harness builds carries no signature, and `nix copy` checks signatures unless told
# not to, also towards a trusted user or root ("lacks a valid signature"; deploy-rs passes the
# same flag): the receiving daemon honours this only from a trusted user.
_UNSIGNED = ("--no-check-sigs",)


def _deployer_ssh(fleet: Fleet) -> dict[str, str]:
    """NIX_SSHOPTS for the port QEMU forwards to the deployer's sshd."""
    return {"NIX_SSHOPTS": shlex.join([*SSH_OPTIONS, "-p", str(fleet[DEPLOYER].forwarded_port(22))])}


def copy_to_deployer(fleet: Fleet, paths: Sequence[str]) -> None:
    """Store paths built here into the deployer's store, as CI's runner has what it built."""
    nix.run_nix(["copy", *_UNSIGNED, "--to", _DEPLOYER_STORE, *paths, *nix.option_args(nix.OFFLINE_OPTIONS)], env=_deployer_ssh(fleet))


def booter(accel: str, *, boot_timeout: float = 900) -> BootTwins:
    """boot_twins(trees, hosts) for rehearse(): the base's twins of `hosts` and a deployer."""

    @contextlib.contextmanager
    def boot_twins(trees: Trees, hosts: Sequence[str]) -> Iterator[TwinsOnFleet]:
        base = str(trees.base.path)
        facts = read_facts(base)
        chosen = accel_mod.resolve(accel).name
        fleet = Fleet(twin_spec(facts, hosts, flake=base, name="rehearsal"), accel=chosen, boot_timeout=boot_timeout)
        try:
            fleet.boot()
            prepare(fleet, [h for h in fleet.spec.nodes if h != DEPLOYER])
            yield TwinsOnFleet(fleet, facts, trees.head.path, hosts)
        finally:
            fleet.close()

    return boot_twins
