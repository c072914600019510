"""deploy-rs log lines, written from deploy-rs's source (serokell/deploy-rs, mirror HEAD d5eff7f).

Line shape: src/lib.rs logger_formatter_{deploy,activate,wait,revoke}:
    "<source emoji> <level emoji> [<source>] [<LEVEL>] <message>"
with the level painted by flexi_logger's palette "196;208;51;7;8" (error, warn, info, debug,
trace), i.e. 256-colour escapes "\\x1b[38;5;<n>m<LEVEL>\\x1b[0m". Messages are the format
strings of the cited functions with test values filled in. Lines that are not deploy-rs's own
(nix copy, switch-to-configuration, ssh) are plain text, as those tools print them.

These are recorded strings for the parser and for the runner's stand-in `deploy`; they are not
output of a deploy-rs run.
"""

from __future__ import annotations

SOURCE_EMOJI = {"deploy": "🚀", "activate": "⭐", "wait": "👀", "revoke": "↩️"}
LEVEL_EMOJI = {"ERROR": "❌", "WARN": "⚠️", "INFO": "ℹ️", "DEBUG": "❓"}
PALETTE = {"ERROR": 196, "WARN": 208, "INFO": 51, "DEBUG": 7}

CLOSURE = "/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-activatable-nixos-system-target"


def line(source: str, level: str, message: str, colour: bool) -> str:
    shown = f"\x1b[38;5;{PALETTE[level]}m{level}\x1b[0m" if colour else level
    return f"{SOURCE_EMOJI[source]} {LEVEL_EMOJI[level]} [{source}] [{shown}] {message}"


def _render(entries: list[tuple[str, str, str] | str], colour: bool) -> str:
    return (
        "\n".join(
            entry if isinstance(entry, str) else line(*entry, colour=colour) for entry in entries
        )
        + "\n"
    )


def _preamble(node: str = "target", profile: str = "system") -> list[tuple[str, str, str] | str]:
    return [
        ("deploy", "INFO", "Running checks for flake in ."),  # cli.rs check_deployment
        ("deploy", "INFO", "Evaluating flake in ."),  # cli.rs get_deployment_data
        # cli.rs print_deployment: a multi-line TOML message
        ("deploy", "INFO", "The following profiles are going to be deployed:"),
        f"[{node}.{profile}]",
        'user = "root"',
        'ssh_user = "deploy"',
        f'path = "{CLOSURE}"',
        f'hostname = "{node}"',
        'ssh_opts = ["-o", "StrictHostKeyChecking=no"]',
        "",
        ("deploy", "INFO", f"Building profile `{profile}` for node `{node}`"),  # push.rs
        ("deploy", "INFO", f"Copying profile `{profile}` to node `{node}`"),  # push.rs
        "copying 2 paths...",  # nix copy's own output
    ]


def _activation_start(node: str = "target", profile: str = "system") -> list:
    return [
        ("deploy", "INFO", f"Activating profile `{profile}` for node `{node}`"),  # deploy.rs
        ("deploy", "INFO", "Creating activation waiter"),  # deploy.rs (magic rollback branch)
        ("activate", "INFO", "Activating profile"),  # activate.rs activate
        ("wait", "INFO", "Waiting for confirmation event..."),  # activate.rs danger_zone
    ]


def _confirmed_switch(node: str = "target", profile: str = "system") -> list:
    return [
        *_activation_start(node, profile),
        "activating the configuration...",  # switch-to-configuration
        ("activate", "INFO", "Activation succeeded!"),  # activate.rs activate
        ("activate", "INFO", "Magic rollback is enabled, setting up confirmation hook..."),
        ("activate", "INFO", "Waiting for confirmation event..."),
        ("wait", "INFO", "Found canary file, done waiting!"),  # activate.rs wait
        ("deploy", "INFO", "Success activating, attempting to confirm activation"),  # deploy.rs
        ("deploy", "INFO", "Deployment confirmed."),  # deploy.rs confirm_profile
    ]


def _target_deactivation(generation: int = 3) -> list:
    # activate.rs deactivate
    return [
        ("activate", "WARN", "De-activating due to error"),
        ("activate", "WARN", f"Removing generation by ID {generation}"),
        ("activate", "INFO", "Attempting to re-activate the last generation"),
    ]


def success(colour: bool) -> str:
    return _render([*_preamble(), *_confirmed_switch()], colour)


def auto_rollback(colour: bool) -> str:
    return _render(
        [
            *_preamble(),
            *_activation_start(),
            "warning: the following units failed: broken.service",  # switch-to-configuration
            *_target_deactivation(),
            # activate.rs ActivateError::RunActivateExit (switch-to-configuration exits 4)
            ("activate", "ERROR", "The activation script resulted in a bad exit code: Some(4)"),
            # deploy.rs DeployProfileError::SSHActivateExit, logged by cli.rs run_deploy
            ("deploy", "ERROR", "Activating over SSH resulted in a bad exit code: Some(1)"),
            ("deploy", "INFO", "Revoking previous deploys"),  # cli.rs run_deploy
            # cli.rs RunDeployError::Rollback, logged by bin/deploy.rs main
            (
                "deploy",
                "ERROR",
                "Deployment to node target failed, rolled back to previous generation",
            ),
        ],
        colour,
    )


def magic_rollback(colour: bool) -> str:
    """The confirmation ssh cannot reach the target; the target times out and rolls back.

    deploy.rs awaits the activate ssh (recv_activated) before reporting the confirm error, so
    what it logs is the activate channel's error, after "attempting to confirm activation".
    """
    return _render(
        [
            *_preamble(),
            *_activation_start(),
            ("activate", "INFO", "Activation succeeded!"),
            ("activate", "INFO", "Magic rollback is enabled, setting up confirmation hook..."),
            ("activate", "INFO", "Waiting for confirmation event..."),
            ("wait", "INFO", "Found canary file, done waiting!"),
            ("deploy", "INFO", "Success activating, attempting to confirm activation"),
            "ssh: connect to host target port 22: Connection refused",
            *_target_deactivation(),
            # activate.rs ActivateError::ActivationConfirmation(WaitingError(TimesUp))
            (
                "activate",
                "ERROR",
                "Failed to get activation confirmation: Error waiting for confirmation event: "
                "Timeout elapsed for confirmation",
            ),
            ("deploy", "ERROR", "Activating over SSH resulted in a bad exit code: RecvError(())"),
            ("deploy", "INFO", "Revoking previous deploys"),
            (
                "deploy",
                "ERROR",
                "Deployment to node target failed, rolled back to previous generation",
            ),
        ],
        colour,
    )


def magic_rollback_confirm_error(colour: bool) -> str:
    """The same failure as deploy.rs's ConfirmProfileError reports it (no target-side lines)."""
    return _render(
        [
            *_preamble(),
            *_activation_start(),
            ("wait", "INFO", "Found canary file, done waiting!"),
            ("deploy", "INFO", "Success activating, attempting to confirm activation"),
            (
                "deploy",
                "ERROR",
                "Error confirming deployment: Confirming activation over SSH resulted in a bad "
                "exit code (the server should roll back): Some(255)",
            ),
            (
                "deploy",
                "ERROR",
                "Deployment to node target failed, rolled back to previous generation",
            ),
        ],
        colour,
    )


def failure_without_rollback(colour: bool) -> str:
    """`--auto-rollback false` on the CLI: cli.rs RunDeployError::DeployProfile instead."""
    return _render(
        [
            *_preamble(),
            *_activation_start(),
            ("activate", "ERROR", "The activation script resulted in a bad exit code: Some(4)"),
            ("deploy", "ERROR", "Activating over SSH resulted in a bad exit code: Some(1)"),
            (
                "deploy",
                "ERROR",
                "Failed to deploy profile to node target: Activating over SSH resulted in a bad "
                "exit code: Some(1)",
            ),
        ],
        colour,
    )


def push_failure(colour: bool) -> str:
    return _render(
        [
            *_preamble(),
            # nix copy's own error (the target does not trust the deployer's unsigned paths)
            f"error: cannot add path '{CLOSURE}' because it lacks a valid signature",
            # cli.rs RunDeployError::PushProfile: "Failed to push profile to node {0}: {0}"
            ("deploy", "ERROR", "Failed to push profile to node target: target"),
        ],
        colour,
    )


def boot(colour: bool) -> str:
    # --boot takes deploy.rs's non-waiting branch: no waiter, no confirmation.
    return _render(
        [
            *_preamble(),
            ("deploy", "INFO", "Activating profile `system` for node `target`"),
            ("activate", "INFO", "Activating profile"),
            "updating systemd-boot...",
            ("activate", "INFO", "Activation succeeded!"),
            ("deploy", "INFO", "Success activating for next boot, done!"),  # deploy.rs
        ],
        colour,
    )


def dry_activate(colour: bool) -> str:
    # --dry-activate: deploy.rs logs no "Activating profile" and activate.rs no "Activating"
    # or "Activation succeeded!" lines; only the result.
    return _render(
        [
            *_preamble(),
            "would restart the following units: sshd.service",  # switch-to-configuration
            ("deploy", "INFO", "Completed dry-activate!"),  # deploy.rs
        ],
        colour,
    )


def two_nodes_second_rolled_back(colour: bool) -> str:
    return _render(
        [
            *_preamble("alpha"),
            ("deploy", "INFO", "Building profile `system` for node `beta`"),
            ("deploy", "INFO", "Copying profile `system` to node `beta`"),
            *_confirmed_switch("alpha"),
            *_activation_start("beta"),
            *_target_deactivation(5),
            ("activate", "ERROR", "The activation script resulted in a bad exit code: Some(4)"),
            ("deploy", "ERROR", "Activating over SSH resulted in a bad exit code: Some(1)"),
            ("deploy", "INFO", "Revoking previous deploys"),
            # deploy.rs revoke on alpha runs activate-rs revoke -> activate.rs deactivate
            ("revoke", "WARN", "De-activating due to error"),
            (
                "deploy",
                "ERROR",
                "Deployment to node beta failed, rolled back to previous generation",
            ),
        ],
        colour,
    )
