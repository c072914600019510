"""What the head would deploy, asked of the head tree's own `ci/` scripts exactly as the
deploy workflow asks them: `ci/determine-hosts` (the deployable hosts), `ci/needs-reboot` (per
host: does the head change the kernel, initrd or modules the twin booted?) and
`ci/deploy-plan --branch main` (the deploy command, with `--boot` when a reboot is needed).

The scripts are the head's, not this package's: a pull request that changes them is rehearsed
with its own rules. They are standard-library Python, run with this interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .worktrees import RehearsalError

# The links ci/needs-reboot compares (its LINKS), read from the twin's /run/booted-system.
BOOTED_LINKS = ("kernel", "initrd", "kernel-modules")
SCRIPT_TIMEOUT = 900  # determine-hosts evaluates the flake; a cold evaluation takes minutes


@dataclass(frozen=True)
class RebootDecision:
    host: str
    needed: bool
    why: str  # needs-reboot's own explanation (its stderr)


@dataclass(frozen=True)
class DeployPlan:
    """ci/deploy-plan's answer for a push of the head to main (its JSON, as printed)."""

    mode: str  # "switch" or "boot"
    hosts: tuple[str, ...]
    argv: tuple[str, ...]
    env: Mapping[str, str]
    build: tuple[str, ...]
    command: str
    reason: str


def run_script(tree: Path, script: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`<tree>/ci/<script> ARGS` in `tree`; its exit status and output, as they came."""
    path = tree / "ci" / script
    if not path.is_file():
        raise RehearsalError(f"the tree at {tree} has no ci/{script}: is it a checkout of the fleet repository?")
    try:
        return subprocess.run([sys.executable, str(path), *args], cwd=tree, capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT, env={**os.environ, **(env or {})},
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RehearsalError(f"ci/{script} of {tree} did not finish within {SCRIPT_TIMEOUT} s") from None


def _failed(script: str, done: subprocess.CompletedProcess) -> RehearsalError:
    return RehearsalError(f"the head's ci/{script} exited {done.returncode}: "
                          f"{(done.stderr or done.stdout).strip()[-800:] or '(no output)'}")


def deployable_hosts(head: Path) -> list[str]:
    """The head's deployable hosts: `ci/determine-hosts --flake .` in the head tree."""
    done = run_script(head, "determine-hosts", "--flake", ".")
    if done.returncode != 0:
        raise _failed("determine-hosts", done)
    return json.loads(done.stdout)


def configured_hosts(base: Path) -> list[str]:
    """Every host the base has a configuration of (`ci/determine-hosts --all`): the twins
    that can boot as the base configures them."""
    done = run_script(base, "determine-hosts", "--all", "--flake", ".")
    if done.returncode != 0:
        raise _failed("determine-hosts", done)
    return json.loads(done.stdout)


def without_base(hosts: Sequence[str], configured: Sequence[str], requested: Sequence[str]) -> list[str]:
    """The hosts the head deploys that the base has no configuration of (a first deploy: no
    twin can boot "as the base configures it"). Asked for by name, that is an error."""
    new = [name for name in hosts if name not in configured]
    asked = [name for name in new if name in requested]
    if asked:
        raise RehearsalError(f"--host {', '.join(asked)}: the base has no configuration of it (a host new "
                             "in the head): there is no base to boot its twin from")
    return new


def select_hosts(deployable: Sequence[str], requested: Sequence[str]) -> list[str]:
    """The hosts to rehearse: every deployable one, or those asked for (each must be one)."""
    if not deployable:
        raise RehearsalError("the head has no deployable hosts (deploy.nodes is empty): nothing to rehearse")
    unknown = [name for name in requested if name not in deployable]
    if unknown:
        raise RehearsalError(f"--host {', '.join(unknown)}: not a deployable host of the head "
                             f"(deployable: {', '.join(deployable)}; names are case-sensitive)")
    chosen = [name for name in deployable if name in requested] if requested else list(deployable)
    return chosen


def needs_reboot(head: Path, host: str, booted: Mapping[str, str | None], new_toplevel: str) -> RebootDecision:
    """`ci/needs-reboot --booted DIR --new TOPLEVEL`, DIR holding the links the twin's
    /run/booted-system resolves to (`booted`, read on the twin; None: missing there)."""
    missing = [name for name in BOOTED_LINKS if name not in booted]
    if missing:
        raise RehearsalError(f"{host}: no reading of /run/booted-system/{', '.join(missing)} from the twin")
    with tempfile.TemporaryDirectory(prefix="ndh-booted-") as directory:
        for name in BOOTED_LINKS:
            if booted[name]:
                os.symlink(booted[name], os.path.join(directory, name))
        done = run_script(head, "needs-reboot", "--booted", directory, "--new", new_toplevel, "--host", host)
    if done.returncode != 0 or done.stdout.strip() not in ("true", "false"):
        raise _failed("needs-reboot", done)
    return RebootDecision(host, done.stdout.strip() == "true", done.stderr.strip())


def deploy_plan(head: Path, hosts: Sequence[str], reboot_needed: bool) -> DeployPlan:
    """`ci/deploy-plan --branch main --event push --reboot-needed ...` for these hosts: what
    the deploy workflow would run once the head is on main."""
    done = run_script(head, "deploy-plan", "--branch", "main", "--event", "push",
                      "--reboot-needed", "true" if reboot_needed else "false",
                      "--hosts-json", json.dumps(list(hosts)), "--flake", ".")
    if done.returncode != 0:
        raise _failed("deploy-plan", done)
    plan = json.loads(done.stdout)
    if not plan.get("deploy"):
        raise RehearsalError(f"the head's ci/deploy-plan deploys nothing for main: {plan.get('reason')}")
    return DeployPlan(mode=plan["mode"], hosts=tuple(plan["hosts"]), argv=tuple(plan["argv"]),
                      env=dict(plan["env"]), build=tuple(plan["build"]), command=plan["command"],
                      reason=plan["reason"])
