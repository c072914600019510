"""harness/together.py's bookkeeping, with stand-ins for machines (the real fleets are in
test_snapshot_together.py): every failure of a resume is reported, whatever its kind."""
import pytest

from harness import together


class StandIn:
    def __init__(self, name: str, resume_error: BaseException | None = None) -> None:
        self.name = name
        self.booted = True
        self.resume_error = resume_error
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")
        if self.resume_error is not None:
            raise self.resume_error


def test_a_resume_that_ends_with_systemexit_is_reported_not_dropped():
    machines = [StandIn("a", RuntimeError("cont failed")), StandIn("b", SystemExit(3))]
    with pytest.raises(SystemExit) as exited:
        with together.paused(machines):
            pass
    assert exited.value.code == 3  # b's own, ahead of a's ordinary error
    assert [m.calls for m in machines] == [["pause", "resume"], ["pause", "resume"]]


def test_the_body_error_wins_over_a_failed_resume_and_every_machine_is_resumed():
    machines = [StandIn("a", RuntimeError("cont failed")), StandIn("b")]
    with pytest.raises(ValueError, match="body"):
        with together.paused(machines):
            raise ValueError("body")
    assert [m.calls for m in machines] == [["pause", "resume"], ["pause", "resume"]]
