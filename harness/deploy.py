"""Run deploy-rs on the deployer VM and read what it said, as a structured result.

Layer 4 (DESIGN.md §3, §6). The runner never waits on a pipe: when an activation fails,
deploy-rs exits but leaves its `activate-rs wait` ssh running for up to the activation timeout
(240 s by default), holding every pipe it inherited. So `deploy` writes to a log file, the shell
prints the exit status, and the log is read from the file afterwards.

The parsed facts are what deploy-rs *said*, never what the target *is*: in particular
`rollback_claimed` comes from deploy-rs's "rolled back to previous generation" message, which it
prints from its command-line flags, not from anything the target reported. Assert target state
with harness.nixos.

Log strings below come from serokell/deploy-rs (mirror HEAD d5eff7f), cited per pattern. Every
deploy-rs line has the shape "<emoji> <level emoji> [<deploy|activate|wait|revoke>] [<LEVEL>]
<message>" (src/lib.rs, logger_formatter_*), the level coloured with ANSI codes.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from harness.nixos import ShellMachine
from harness.vm.errors import CommandTimeout

LOG_DIR = "/tmp"
# How long deploy gets to finish on the deployer before `timeout` kills it, and how much longer
# the host waits for the shell to answer after that.
DEFAULT_TIMEOUT = 900.0
HOST_TIMEOUT_MARGIN = 30.0
GUEST_TIMEOUT_EXIT = 124  # coreutils `timeout`: the command timed out
GUEST_KILLED_EXIT = 137  # `timeout` had to SIGKILL it after KILL_GRACE: it ignored SIGTERM
KILL_GRACE = 10  # seconds between `timeout`'s SIGTERM and its SIGKILL

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove colour and other terminal escapes (and carriage returns) from deploy output."""
    return _ANSI.sub("", text).replace("\r", "")


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
# Log parsing

_LINE = re.compile(r"\[(?P<source>deploy|activate|wait|revoke)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)")
# src/push.rs build_profile_locally / push_profile; src/deploy.rs deploy_profile
_BUILDING = re.compile(r"Building profile `(?P<profile>[^`]+)` for node `(?P<node>[^`]+)`")
_COPYING = re.compile(r"Copying profile `(?P<profile>[^`]+)` to node `(?P<node>[^`]+)`")
_ACTIVATING = re.compile(r"Activating profile `(?P<profile>[^`]+)` for node `(?P<node>[^`]+)`")
# src/cli.rs RunDeployError (note the upstream `{0}: {0}`: the node name is printed twice and
# the nix error is not printed at all; nix's own stderr lines precede it in the log).
_PUSH_FAILED = re.compile(r"Failed to push profile to node (?P<node>\S+):")
_BUILD_FAILED = re.compile(r"Failed to build profile on node (?P<node>\S+):")
_DEPLOY_FAILED = re.compile(r"Failed to deploy profile to node (?P<node>\S+):")
_ROLLED_BACK = re.compile(
    r"Deployment to node (?P<node>\S+) failed, rolled back to previous generation"
)

# src/deploy.rs deploy_profile: success messages, one per mode.
_SWITCH_DONE = "Success activating, done!"  # no magic rollback
_BOOT_DONE = "Success activating for next boot, done!"
_DRY_DONE = "Completed dry-activate!"
_AWAITING_CONFIRM = "Success activating, attempting to confirm activation"  # magic rollback
_CONFIRMED = "Deployment confirmed."  # confirm_profile
# src/deploy.rs DeployProfileError / ConfirmProfileError
_ACTIVATE_EXIT = "Activating over SSH resulted in a bad exit code"
_WAIT_EXIT = "Waiting over SSH resulted in a bad exit code"
_CONFIRM_FAILED = "Error confirming deployment"
# src/bin/activate.rs, logged on the target and carried back over ssh stderr.
_TARGET_ACTIVATION_SCRIPT_FAILED = "The activation script resulted in a bad exit code"
_TARGET_CONFIRMATION_FAILED = "Failed to get activation confirmation"
_TARGET_DEACTIVATING = "De-activating due to error"

RollbackKind = Literal["auto", "magic", "unknown"]
DeployMode = Literal["switch", "boot", "dry-activate"]


@dataclass
class ProfileDeploy:
    """One node/profile activation attempt, as deploy-rs reported it."""

    node: str
    profile: str
    activated: bool = False  # the activation script succeeded (any mode)
    awaiting_confirmation: bool = False  # magic rollback: activated, canary seen, confirming
    confirmed: bool = False  # magic rollback: the canary was removed ("Deployment confirmed.")
    for_next_boot: bool = False  # --boot: "Success activating for next boot, done!"
    activation_failed: bool = False  # activation script or its ssh exited non-zero
    confirmation_failed: bool = False  # magic rollback: wait or confirm failed


@dataclass(frozen=True)
class DeployResult:
    """What a deploy run said. Target state is for harness.nixos to prove, not for this."""

    exit_code: int
    log: str  # ANSI-stripped
    command: str
    log_path: str | None  # the raw (coloured) log on the deployer
    mode: DeployMode
    timed_out: bool  # killed by the deployer-side `timeout`
    built: tuple[tuple[str, str], ...]  # (node, profile) deploy-rs started building
    pushed: tuple[tuple[str, str], ...]  # (node, profile) deploy-rs started copying
    profiles: tuple[ProfileDeploy, ...]  # activation attempts, in order
    build_failed_node: str | None
    push_failed_node: str | None
    deploy_failed_node: str | None  # failed without a rollback claim
    dry_activate_completed: bool
    # deploy-rs printed "rolled back to previous generation" (printed from CLI flags, not from
    # target state); the kind is inferred from the failure before it.
    rollback_claimed: RollbackKind | None
    rollback_claimed_node: str | None
    # activate-rs on the target logged "De-activating due to error": a rollback was attempted.
    target_reported_deactivation: bool
    errors: tuple[str, ...]  # every [ERROR] message, in order

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def activated(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.node, p.profile) for p in self.profiles if p.activated)

    @property
    def confirmed(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.node, p.profile) for p in self.profiles if p.confirmed)

    @property
    def activated_for_next_boot(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.node, p.profile) for p in self.profiles if p.for_next_boot)

    @property
    def activation_failed(self) -> bool:
        return any(p.activation_failed for p in self.profiles)

    @property
    def confirmation_failed(self) -> bool:
        return any(p.confirmation_failed for p in self.profiles)

    def summary(self) -> str:
        errors = "; ".join(self.errors[-3:]) or "none"
        return (
            f"deploy exited {self.exit_code} ({self.mode}); activated {list(self.activated)}, "
            f"confirmed {list(self.confirmed)}, rollback claimed: {self.rollback_claimed}; "
            f"errors: {errors}"
        )


def parse_deploy_log(
    raw_log: str,
    exit_code: int,
    *,
    mode: DeployMode = "switch",
    command: str = "",
    log_path: str | None = None,
) -> DeployResult:
    """Turn a deploy-rs log (coloured or not) into a DeployResult."""
    log = strip_ansi(raw_log)
    built: list[tuple[str, str]] = []
    pushed: list[tuple[str, str]] = []
    profiles: list[ProfileDeploy] = []
    errors: list[str] = []
    build_failed = push_failed = deploy_failed = rolled_back_node = None
    dry_done = deactivation = False
    # Dry activation logs no "Activating profile" line: attribute to a placeholder then.
    unknown = ProfileDeploy(node="?", profile="?")

    def current() -> ProfileDeploy:
        return profiles[-1] if profiles else unknown

    for line in log.splitlines():
        found = _LINE.search(line)
        if found is None:
            continue
        source, level, msg = found["source"], found["level"], found["msg"].strip()
        if level == "ERROR":
            errors.append(f"[{source}] {msg}")
        if match := _BUILDING.search(msg):
            built.append((match["node"], match["profile"]))
        elif match := _COPYING.search(msg):
            pushed.append((match["node"], match["profile"]))
        elif source == "deploy" and (match := _ACTIVATING.search(msg)):
            profiles.append(ProfileDeploy(node=match["node"], profile=match["profile"]))
        elif match := _BUILD_FAILED.search(msg):
            build_failed = match["node"]
        elif match := _PUSH_FAILED.search(msg):
            push_failed = match["node"]
        elif match := _ROLLED_BACK.search(msg):
            rolled_back_node = match["node"]
        elif match := _DEPLOY_FAILED.search(msg):
            deploy_failed = match["node"]
        elif msg.startswith(_SWITCH_DONE):
            current().activated = True
        elif msg.startswith(_AWAITING_CONFIRM):
            current().activated = current().awaiting_confirmation = True
        elif msg.startswith(_BOOT_DONE):
            current().activated = current().for_next_boot = True
        elif msg.startswith(_DRY_DONE):
            dry_done = True
        elif msg.startswith(_CONFIRMED):
            current().confirmed = True
        elif _TARGET_CONFIRMATION_FAILED in msg or msg.startswith((_WAIT_EXIT, _CONFIRM_FAILED)):
            current().confirmation_failed = True
        elif _TARGET_ACTIVATION_SCRIPT_FAILED in msg:
            current().activation_failed = True
        elif msg.startswith(_ACTIVATE_EXIT):
            # After "attempting to confirm", deploy_profile awaits the activate ssh before it
            # reports the confirm result, and that ssh ends non-zero when the target times out
            # waiting for the canary (src/deploy.rs: recv_activated before `c?`). So this error
            # then means "not confirmed", not "activation script failed".
            if current().awaiting_confirmation:
                current().confirmation_failed = True
            else:
                current().activation_failed = True
        elif msg.startswith(_TARGET_DEACTIVATING):
            deactivation = True

    if exit_code != 0 and profiles:
        last = profiles[-1]
        if last.awaiting_confirmation and not last.confirmed:
            last.confirmation_failed = True

    rollback_claimed: RollbackKind | None = None
    if rolled_back_node is not None:
        failing = [p for p in profiles if p.node == rolled_back_node] or [current()]
        last = failing[-1]
        if last.confirmation_failed:
            rollback_claimed = "magic"
        elif last.activation_failed:
            rollback_claimed = "auto"
        else:
            rollback_claimed = "unknown"
    return DeployResult(
        exit_code=exit_code,
        log=log,
        command=command,
        log_path=log_path,
        mode=mode,
        timed_out=exit_code == GUEST_TIMEOUT_EXIT,
        built=tuple(built),
        pushed=tuple(pushed),
        profiles=tuple(profiles),
        build_failed_node=build_failed,
        push_failed_node=push_failed,
        deploy_failed_node=deploy_failed,
        dry_activate_completed=dry_done,
        rollback_claimed=rollback_claimed,
        rollback_claimed_node=rolled_back_node,
        target_reported_deactivation=deactivation,
        errors=tuple(errors),
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
    log_path = log_path or f"{LOG_DIR}/harness-deploy-{uuid.uuid4().hex[:12]}.log"
    argv = deploy_command_line(targets, options)
    command = deploy_shell_command(argv, options, log_path, timeout, workdir)
    mode: DeployMode = (
        "boot" if options.boot else "dry-activate" if options.dry_activate else "switch"
    )
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
