"""Run deploy-rs on the deployer VM and read what it said, as a structured result.

The runner never waits on a pipe: when an activation fails,
deploy-rs exits but leaves its `activate-rs wait` ssh running for up to the activation timeout
(240 s by default), holding every pipe it inherited. So `deploy` writes to a log file, the shell
prints the exit status, and the log is read from the file afterwards.

The log is parsed by harness.deploy.log (what deploy-rs *said*, never what the target *is*);
its public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.deploy.log import (  # noqa: F401  (re-exported: scenarios import them from here)
    GUEST_TIMEOUT_EXIT,
    DeployMode,
    DeployResult,
    ProfileDeploy,
    RollbackKind,
    parse_deploy_log,
    strip_ansi,
)
from harness.vm.guest import ShellMachine
from harness.vm import CommandTimeout

__all__ = [
    "DEFAULT_TIMEOUT", "GUEST_KILLED_EXIT", "GUEST_TIMEOUT_EXIT", "HOST_TIMEOUT_MARGIN", "KILL_GRACE",
    "LOG_DIR", "DeployError", "DeployMode", "DeployOptions", "DeployResult", "ProfileDeploy",
    "RollbackKind", "deploy_command_line", "deploy_shell_command", "parse_deploy_log", "run_deploy",
    "run_deploy_argv",
    "strip_ansi",
]

LOG_DIR = "/tmp"
# How long deploy gets to finish on the deployer before `timeout` kills it, and how much longer
# the host waits for the shell to answer after that.
DEFAULT_TIMEOUT = 900.0
HOST_TIMEOUT_MARGIN = 30.0
GUEST_KILLED_EXIT = 137  # `timeout` had to SIGKILL it after KILL_GRACE: it ignored SIGTERM
KILL_GRACE = 10  # seconds between `timeout`'s SIGTERM and its SIGKILL


class DeployError(RuntimeError):
    """The runner could not run deploy or read its log (not: deploy reported a failure)."""


@dataclass(frozen=True)
class DeployOptions:
    """deploy-rs command-line options (src/cli.rs, struct Opts). None: deploy-rs's default."""

    boot: bool = False
    dry_activate: bool = False
    magic_rollback: bool | None = None
    auto_rollback: bool | None = None
    rollback_succeeded: bool | None = None
    confirm_timeout: int | None = None
    activation_timeout: int | None = None
    skip_checks: bool = False
    checksigs: bool = False
    debug_logs: bool = False
    hostname: str | None = None
    ssh_user: str | None = None
    ssh_opts: str | None = None
    extra_flags: Sequence[str] = ()  # further deploy flags, passed as given
    nix_args: Sequence[str] = ()  # after `--`: extra arguments for nix build/eval, e.g. --impure
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. HOMELAB_DEPLOY_TEST_HOST

    def __post_init__(self) -> None:
        if self.boot and self.dry_activate:
            # deploy-rs only logs an error for this combination and carries on (src/cli.rs run).
            raise ValueError("deploy-rs cannot combine --boot and --dry-activate")

    def arguments(self) -> list[str]:
        args: list[str] = []
        if self.boot:
            args.append("--boot")
        if self.dry_activate:
            args.append("--dry-activate")
        for flag, value in (
            ("--magic-rollback", self.magic_rollback),
            ("--auto-rollback", self.auto_rollback),
            ("--rollback-succeeded", self.rollback_succeeded),
        ):
            if value is not None:
                args += [flag, "true" if value else "false"]
        for flag, number in (
            ("--confirm-timeout", self.confirm_timeout),
            ("--activation-timeout", self.activation_timeout),
        ):
            if number is not None:
                args += [flag, str(number)]
        for flag, enabled in (
            ("--skip-checks", self.skip_checks),
            ("--checksigs", self.checksigs),
            ("--debug-logs", self.debug_logs),
        ):
            if enabled:
                args.append(flag)
        for flag, text in (
            ("--hostname", self.hostname),
            ("--ssh-user", self.ssh_user),
            ("--ssh-opts", self.ssh_opts),
        ):
            if text is not None:
                args += [flag, text]
        return args + list(self.extra_flags)


def deploy_command_line(targets: str | Sequence[str], options: DeployOptions) -> list[str]:
    """The `deploy` argv: flags, the flake target(s), then `--` and the nix arguments."""
    target_list = [targets] if isinstance(targets, str) else list(targets)
    if not target_list:
        raise ValueError("give at least one flake target, e.g. '.#target'")
    if len(target_list) == 1:
        argv = ["deploy", *options.arguments(), target_list[0]]
    else:
        argv = ["deploy", *options.arguments(), "--targets", *target_list]
    if options.nix_args:
        argv += ["--", *options.nix_args]
    return argv


def deploy_shell_command(
    argv: Sequence[str],
    options: DeployOptions,
    log_path: str,
    timeout: float,
    workdir: str | None,
) -> str:
    """The shell line run on the deployer: output to a file, then print the exit status."""
    q = shlex.quote
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")  # `timeout 0` never fires
    for name in options.env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
    env = [f"{name}={q(value)}" for name, value in options.env.items()]
    # Without --foreground, `timeout` signals deploy's whole process group: its ssh children too.
    # `-k` (not --kill-after): coreutils and busybox both take it.
    run = " ".join(
        [*(["env", *env] if env else []), "timeout", "-k", f"{KILL_GRACE:g}", f"{timeout:g}"]
        + [shlex.join(argv)]
    )
    cd = f"cd {q(workdir)} && " if workdir else ""
    # A subshell, so `cd` does not outlive the command; `&& rc=0 || rc=$?` records the status
    # even under `set -e` (the NixOS driver runs commands with `set -euo pipefail`). stdin from
    # /dev/null: deploy must never read the backdoor console.
    return (
        f"( {cd}{{ {run} > {q(log_path)} 2>&1 < /dev/null && rc=0 || rc=$?; "
        f'echo "deploy-exit-status:$rc"; }} )'
    )



# ---------------------------------------------------------------------------------------------
# The runner

_STATUS = re.compile(r"^deploy-exit-status:(\d+)$", re.MULTILINE)


def run_deploy(
    deployer: ShellMachine,
    targets: str | Sequence[str],
    options: DeployOptions | None = None,
    *,
    workdir: str | None = None,
    log_path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DeployResult:
    """Run `deploy` on the deployer with output to `log_path`; return the parsed result.

    Each run gets its own log file by default: a previous run's orphaned `wait` ssh may still
    hold its log open and write into it.

    `timeout` bounds deploy on the deployer (`timeout`: exit 124, or 137 when deploy ignored
    SIGTERM and was killed KILL_GRACE later -> timed_out); the
    host waits `HOST_TIMEOUT_MARGIN` longer for the shell before giving up with DeployError.
    """
    options = options or DeployOptions()
    mode: DeployMode = (
        "boot" if options.boot else "dry-activate" if options.dry_activate else "switch"
    )
    return run_deploy_argv(deployer, deploy_command_line(targets, options), options, mode,
                           workdir=workdir, log_path=log_path, timeout=timeout)


def run_deploy_argv(
    deployer: ShellMachine,
    argv: Sequence[str],
    options: DeployOptions,
    mode: DeployMode,
    *,
    workdir: str | None = None,
    log_path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DeployResult:
    """run_deploy for a deploy command line given whole (a rehearsal runs the deploy plan's
    own argv): the same log, timeout and status handling."""
    log_path = log_path or f"{LOG_DIR}/harness-deploy-{uuid.uuid4().hex[:12]}.log"
    command = deploy_shell_command(argv, options, log_path, timeout, workdir)
    where = f"on {deployer.name}"
    started = time.monotonic()
    try:
        status, output = deployer.execute(command, timeout=timeout + HOST_TIMEOUT_MARGIN)
    except (CommandTimeout, TimeoutError) as error:
        raise DeployError(
            f"deploy {where} did not return within {timeout + HOST_TIMEOUT_MARGIN:.0f} s even "
            f"though it runs under `timeout {timeout:g}`: the deployer's shell is stuck. "
            f"Read {log_path} and the serial log of {deployer.name}; restore a snapshot or "
            "reboot the deployer before using it again."
        ) from error
    match = _STATUS.search(output)
    if status != 0 or match is None:
        raise DeployError(
            f"could not run deploy {where} (shell status {status}, output {output[-300:]!r}). "
            f"Command: {command}. Check that the working directory exists and the shell works."
        )
    exit_code = int(match[1])
    read_status, raw_log = deployer.execute(f"cat -- {shlex.quote(log_path)}", timeout=60)
    if read_status != 0:
        raise DeployError(
            f"deploy {where} exited {exit_code} but its log {log_path} could not be read "
            f"(cat exited {read_status}). Is /tmp writable and not cleaned between calls?"
        )
    if exit_code == 127:  # `timeout` (or the shell) could not find the command
        raise DeployError(
            f"`deploy` could not be started {where} (exit 127): is deploy-rs in the deployer's "
            f"environment.systemPackages? Log: {strip_ansi(raw_log)[-300:]!r}"
        )
    result = parse_deploy_log(raw_log, exit_code, mode=mode, command=command, log_path=log_path)
    if exit_code == GUEST_KILLED_EXIT and time.monotonic() - started >= timeout:
        # Killed by `timeout` itself after deploy ignored SIGTERM: a timeout too.
        result = dataclasses.replace(result, timed_out=True)
    return result
