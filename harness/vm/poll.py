"""The one poll loop behind every wait: call `attempt` until `done(result)`, backing off from
50 ms to 1 s, for at most `timeout` seconds. Returns the result that satisfied `done`; on timeout
raises PollTimeout carrying the last result."""
from __future__ import annotations

from typing import Callable, TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

T = TypeVar("T")


class PollTimeout(Exception):
    """`done` never held within the timeout; `last` is the last result."""

    def __init__(self, last) -> None:
        self.last = last
        super().__init__("timed out")


def poll(attempt: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.05, max=1),
        retry=retry_if_result(lambda result: not done(result)),
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        raise PollTimeout(exc.last_attempt.result()) from None
