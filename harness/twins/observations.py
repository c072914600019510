"""What a rehearsal saw on one twin, and the verdict: would the head break this host?

Every field is read from the twin itself (its probes, its units, an ssh login), never taken
from deploy-rs's output; deploy-rs's exit status is kept beside them only to be shown."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The rehearsal's exit statuses (the CLI's, the workflow job's).
EXIT_OK = 0  # every host took the head and boots it
EXIT_ERROR = 1  # the rehearsal itself could not run (message on stderr)
EXIT_WOULD_BREAK = 3  # at least one host would break: the report says which and why


@dataclass(frozen=True)
class HostResult:
    host: str
    mode: str  # how the head was deployed: "switch" or "boot" (ci/deploy-plan's mode)
    reboot_needed: bool  # ci/needs-reboot's answer for this host
    reboot_why: str = ""  # its explanation
    # After the deploy (and after magic rollback's confirm timeout had passed):
    activated: bool = False  # switch: the head's system runs; boot: it is the boot default
    failed_units: tuple[str, ...] = ()
    journal_tail: str = ""  # of the failed units
    ssh_answers: bool = False  # a login as the deploy user ran a command
    rolled_back: bool = False  # the head's system was switched to, and the base's runs again
    # After the reboot that follows every deploy: None when the twin could not be rebooted.
    boots_head: bool | None = None
    booted_system: str | None = None
    head_system: str | None = None
    deploy_exit_status: int | None = None  # what deploy-rs said, for the record only
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def problems(self) -> list[str]:
        """Why this host would break, one reason each; empty: it would not."""
        found = []
        if not self.activated:
            what = "the head's system is not running" if self.mode == "switch" else "the head's system is not the boot default"
            found.append(f"not activated: {what}")
        if self.failed_units:
            found.append(f"failed units: {', '.join(self.failed_units)}")
        if not self.ssh_answers:
            found.append("ssh as the deploy user does not answer")
        if self.rolled_back:
            found.append("rolled back to the base's system")
        if self.boots_head is None:
            found.append("not rebooted: whether it boots the head is unknown")
        elif not self.boots_head:
            found.append(f"after a reboot it runs {self.booted_system or 'nothing known'}, not the head's system")
        return found

    @property
    def breaks(self) -> bool:
        return bool(self.problems)

    def as_json(self) -> dict:
        data = asdict(self)
        data["failed_units"] = list(self.failed_units)
        data["notes"] = list(self.notes)
        data["breaks"] = self.breaks
        data["problems"] = self.problems
        return data


def exit_status(results: list[HostResult]) -> int:
    """EXIT_WOULD_BREAK if any host would break (or none was rehearsed), else EXIT_OK."""
    if not results or any(result.breaks for result in results):
        return EXIT_WOULD_BREAK
    return EXIT_OK
