"""deploy-rs's log as a structured result: which profiles were built, copied, activated,
confirmed, and what deploy-rs claims about rollbacks.

The parsed facts are what deploy-rs *said*, never what the target *is*: `rollback_claimed` comes
from deploy-rs's "rolled back to previous generation" message, which it prints from its
command-line flags, not from anything the target reported. Assert target state with
harness.nixos.

Log strings below come from serokell/deploy-rs (mirror HEAD d5eff7f), cited per pattern. Every
deploy-rs line has the shape "<emoji> <level emoji> [<deploy|activate|wait|revoke>] [<LEVEL>]
<message>" (src/lib.rs, logger_formatter_*), the level coloured with ANSI codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

GUEST_TIMEOUT_EXIT = 124  # coreutils `timeout`: the command timed out

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove colour and other terminal escapes (and carriage returns) from deploy output."""
    return _ANSI.sub("", text).replace("\r", "")


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

