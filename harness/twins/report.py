"""A rehearsal's report: Markdown for a person (the job summary) and JSON for tools (the
artifact), both made from the same host results."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .observations import HostResult, exit_status

JSON_NAME = "rehearsal.json"
MARKDOWN_NAME = "rehearsal.md"
LOG_LINES = 30  # of deploy-rs's log shown in the Markdown


@dataclass(frozen=True)
class Report:
    base_ref: str
    base_commit: str
    head_ref: str
    head_commit: str
    mode: str  # the head's ci/deploy-plan mode: switch or boot
    command: str  # the deploy command it gave
    hosts: tuple[HostResult, ...]
    deploy_log: str = ""  # deploy-rs's output (what it said; the verdicts never read it)
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Hosts the head deploys that the base has no configuration of: no twin could boot them.
    not_rehearsed: tuple[str, ...] = ()

    @property
    def exit_status(self) -> int:
        return exit_status(list(self.hosts))

    @property
    def breaking(self) -> list[str]:
        return [result.host for result in self.hosts if result.breaks]

    def as_json(self) -> dict:
        return {
            "base": {"ref": self.base_ref, "commit": self.base_commit},
            "head": {"ref": self.head_ref, "commit": self.head_commit},
            "mode": self.mode,
            "command": self.command,
            "hosts": [result.as_json() for result in self.hosts],
            "breaking": self.breaking,
            "exit_status": self.exit_status,
            "deploy_log": self.deploy_log,
            "notes": list(self.notes),
            "not_rehearsed": list(self.not_rehearsed),
        }

    def markdown(self) -> str:
        verdict = (f"**would break: {', '.join(self.breaking)}**" if self.breaking
                   else "every host took the head" if self.hosts else "**no host was rehearsed**")
        lines = [
            "## Deploy rehearsal",
            "",
            f"`{self.base_ref}` ({self.base_commit[:12]}) → `{self.head_ref}` ({self.head_commit[:12]}): {verdict}",
            "",
            f"Deployed as the deploy workflow would on main: `{self.command}` ({self.mode}), then a reboot.",
            "",
            "| host | activated | failed units | ssh as deploy | rolled back | reboot needed | boots head after reboot | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.hosts:
            boots = "not rebooted" if r.boots_head is None else _yes(r.boots_head)
            lines.append(
                f"| {r.host} | {_yes(r.activated)} | {', '.join(r.failed_units) or 'none'} | "
                f"{_yes(r.ssh_answers)} | {_yes(r.rolled_back)} | {_yes(r.reboot_needed)} | {boots} | "
                f"{'**breaks**' if r.breaks else 'ok'} |"
            )
        for r in self.hosts:
            if not (r.breaks or r.reboot_why or r.notes):
                continue
            lines += ["", f"### {r.host}", ""]
            lines += [f"- {problem}" for problem in r.problems]
            if r.reboot_why:
                lines.append(f"- ci/needs-reboot: {r.reboot_why.replace(chr(10), '; ')}")
            lines += [f"- {note}" for note in r.notes]
            if r.journal_tail:
                lines += ["", "Journal of the failed units:", "", "```", r.journal_tail.rstrip(), "```"]
        if self.not_rehearsed:
            lines += ["", f"Not rehearsed (new in the head, no base configuration to boot a twin from): "
                          f"{', '.join(self.not_rehearsed)}"]
        lines += [f"- {note}" for note in self.notes]
        if self.deploy_log:
            tail = "\n".join(self.deploy_log.rstrip().splitlines()[-LOG_LINES:])
            lines += ["", "<details><summary>deploy-rs's output (its words; the table is read from the twins)</summary>",
                      "", "```", tail, "```", "", "</details>"]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> tuple[Path, Path]:
        """rehearsal.md and rehearsal.json in `directory` (made if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        markdown, data = directory / MARKDOWN_NAME, directory / JSON_NAME
        markdown.write_text(self.markdown())
        data.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return markdown, data


def _yes(value: bool) -> str:
    return "yes" if value else "no"
